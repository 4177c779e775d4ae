import type { RouteKey } from './route-key.js';

/**
 * Which connections asked for which routes (DESIGN §4: a connection that asks for a route is
 * subscribed to it until it closes). Both directions are indexed so that a push finds its
 * subscribers and a closing connection drops all of its subscriptions in O(its routes).
 *
 * Subscriptions to routes the snapshot does not have ("absent": made-up ids, or routes since
 * deleted) are kept apart (issue 11: 200,000 requests for made-up ids left 73,410 subscriptions
 * behind): each expires a while after it was last asked for, and a connection holds only a few of
 * them, its oldest evicted to make room. The agent forgets an empty route after update_timeout and
 * asks again on the next request, which subscribes it again; a route added meanwhile is pushed to
 * the subscribers it still has. Per connection the absent ones are a Map in the order they were
 * last asked for, which is also their expiry order.
 *
 * A route's only subscriber is held as itself, two or more as a Set: most routes are asked for by
 * one agent, and a Set per route cost ~100 bytes on each of 10,000 routes (issue 17). So `C` must
 * never itself be a Set.
 */
export class Subscriptions<C> {
  private readonly byRoute = new Map<RouteKey, C | Set<C>>();
  private readonly byConn = new Map<C, Set<RouteKey>>();
  private readonly absentByConn = new Map<C, Map<RouteKey, number>>();
  private count = 0;
  private absentTotal = 0;
  /** Absent subscriptions dropped: evicted for room, and expired. */
  readonly stats = { absentEvicted: 0, absentExpired: 0 };

  /**
   * Subscribes to a route the snapshot has; false (nothing changed) when the connection already
   * has `max` routes. A subscription that was absent (the route has appeared since) stops expiring.
   */
  subscribe(conn: C, key: RouteKey, max = Infinity): boolean {
    if (!this.add(conn, key, max)) return false;
    this.forgetAbsent(conn, key);
    return true;
  }

  /**
   * Subscribes to a route the snapshot lacks, until `expiresAt` (asking again renews it); evicts the
   * connection's oldest absent subscription beyond `maxAbsent`. False when `max` is reached.
   */
  subscribeAbsent(conn: C, key: RouteKey, expiresAt: number, maxAbsent: number, max = Infinity): boolean {
    if (!this.add(conn, key, max)) return false;
    this.markAbsent(conn, key, expiresAt, maxAbsent);
    return true;
  }

  /** A route left the snapshot: its subscribers keep it only until `expiresAt` (as if absent). */
  routeRemoved(key: RouteKey, expiresAt: number, maxAbsent: number): void {
    for (const conn of [...this.subscribers(key)]) this.markAbsent(conn, key, expiresAt, maxAbsent);
  }

  /**
   * Drops absent subscriptions that expired by `now` and whose route is still missing (`exists`
   * false); those whose route has appeared are kept as ordinary subscriptions. Returns the number
   * dropped.
   */
  expire(now: number, exists: (key: RouteKey) => boolean): number {
    let dropped = 0;
    for (const [conn, absent] of this.absentByConn) {
      for (const [key, expiresAt] of absent) {
        if (expiresAt > now) break;
        absent.delete(key);
        this.absentTotal--;
        if (exists(key)) continue;
        this.unsubscribe(conn, key);
        dropped++;
      }
      if (absent.size === 0) this.absentByConn.delete(conn);
    }
    this.stats.absentExpired += dropped;
    return dropped;
  }

  /** Drops every subscription of a connection (call on close). */
  drop(conn: C): void {
    const absent = this.absentByConn.get(conn);
    if (absent !== undefined) {
      this.absentTotal -= absent.size;
      this.absentByConn.delete(conn);
    }
    const routes = this.byConn.get(conn);
    if (routes === undefined) return;
    this.byConn.delete(conn);
    for (const key of routes) {
      this.removeSubscriber(key, conn);
      this.count--;
    }
  }

  /** The connections subscribed to a route (a fresh array for a single one: pushes are rare). */
  subscribers(key: RouteKey): Iterable<C> {
    const held = this.byRoute.get(key);
    if (held === undefined) return NONE;
    return held instanceof Set ? held : [held];
  }

  subscriberCount(key: RouteKey): number {
    const held = this.byRoute.get(key);
    return held === undefined ? 0 : held instanceof Set ? held.size : 1;
  }

  /** Total (connection, route) pairs. */
  get size(): number {
    return this.count;
  }

  /** (connection, route) pairs whose route was absent when last asked for (or removed since). */
  get absentSize(): number {
    return this.absentTotal;
  }

  get connections(): number {
    return this.byConn.size;
  }

  private add(conn: C, key: RouteKey, max: number): boolean {
    let routes = this.byConn.get(conn);
    if (routes === undefined) {
      routes = new Set();
      this.byConn.set(conn, routes);
    }
    if (routes.has(key)) return true;
    if (routes.size >= max) return false;
    routes.add(key);
    this.addSubscriber(key, conn);
    this.count++;
    return true;
  }

  private addSubscriber(key: RouteKey, conn: C): void {
    const held = this.byRoute.get(key);
    if (held === undefined) this.byRoute.set(key, conn);
    else if (held instanceof Set) held.add(conn);
    else if (held !== conn) this.byRoute.set(key, new Set([held, conn]));
  }

  private removeSubscriber(key: RouteKey, conn: C): void {
    const held = this.byRoute.get(key);
    if (held instanceof Set) {
      held.delete(conn);
      // Back to the single form once one is left, so a route's memory follows its subscribers.
      if (held.size === 1) this.byRoute.set(key, held.values().next().value as C);
    } else if (held === conn) {
      this.byRoute.delete(key);
    }
  }

  private markAbsent(conn: C, key: RouteKey, expiresAt: number, maxAbsent: number): void {
    let absent = this.absentByConn.get(conn);
    if (absent === undefined) {
      absent = new Map();
      this.absentByConn.set(conn, absent);
    }
    // Delete first: asking again moves the route to the young end (the Map's order is expiry order).
    if (absent.delete(key)) this.absentTotal--;
    absent.set(key, expiresAt);
    this.absentTotal++;
    while (absent.size > maxAbsent) {
      const oldest = absent.keys().next().value as RouteKey;
      absent.delete(oldest);
      this.absentTotal--;
      this.unsubscribe(conn, oldest);
      this.stats.absentEvicted++;
    }
  }

  private forgetAbsent(conn: C, key: RouteKey): void {
    const absent = this.absentByConn.get(conn);
    if (absent === undefined || !absent.delete(key)) return;
    this.absentTotal--;
    if (absent.size === 0) this.absentByConn.delete(conn);
  }

  private unsubscribe(conn: C, key: RouteKey): void {
    const routes = this.byConn.get(conn);
    if (routes === undefined || !routes.delete(key)) return;
    if (routes.size === 0) this.byConn.delete(conn);
    this.removeSubscriber(key, conn);
    this.count--;
  }
}

const NONE: readonly never[] = [];
