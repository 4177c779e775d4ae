/**
 * A route is named by two int32s. Packing them into one number would overflow 2^53 for negative
 * or large ids, so routes are keyed by a short string. Parsing is only needed off the hot path.
 */
export type RouteKey = string;

export function routeKey(modid: number, cmdid: number): RouteKey {
  return `${modid}:${cmdid}`;
}

export function parseRouteKey(key: RouteKey): { modid: number; cmdid: number } {
  const i = key.indexOf(':');
  return { modid: Number(key.slice(0, i)), cmdid: Number(key.slice(i + 1)) };
}
