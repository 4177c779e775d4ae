import type { RouteKey } from './route-key.js';

/**
 * Which connections asked for which routes (DESIGN §4: a connection that asks for a route is
 * subscribed to it until it closes). Both directions are indexed so that a push finds its
 * subscribers and a closing connection drops all of its subscriptions in O(its routes).
 */
export class Subscriptions<C> {
  private readonly byRoute = new Map<RouteKey, Set<C>>();
  private readonly byConn = new Map<C, Set<RouteKey>>();
  private count = 0;

  /** Subscribes; false (nothing changed) when the connection already has `max` routes. */
  subscribe(conn: C, key: RouteKey, max = Infinity): boolean {
    let routes = this.byConn.get(conn);
    if (routes === undefined) {
      routes = new Set();
      this.byConn.set(conn, routes);
    }
    if (routes.has(key)) return true;
    if (routes.size >= max) return false;
    routes.add(key);
    let conns = this.byRoute.get(key);
    if (conns === undefined) {
      conns = new Set();
      this.byRoute.set(key, conns);
    }
    conns.add(conn);
    this.count++;
    return true;
  }

  /** Drops every subscription of a connection (call on close). */
  drop(conn: C): void {
    const routes = this.byConn.get(conn);
    if (routes === undefined) return;
    this.byConn.delete(conn);
    for (const key of routes) {
      const conns = this.byRoute.get(key);
      if (conns === undefined) continue;
      conns.delete(conn);
      if (conns.size === 0) this.byRoute.delete(key);
      this.count--;
    }
  }

  subscribers(key: RouteKey): ReadonlySet<C> {
    return this.byRoute.get(key) ?? NONE;
  }

  /** Total (connection, route) pairs. */
  get size(): number {
    return this.count;
  }

  get connections(): number {
    return this.byConn.size;
  }
}

const NONE: ReadonlySet<never> = new Set();
