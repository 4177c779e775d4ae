/** Message ids of the Lars wire protocol (DESIGN §2). The numbers are the wire contract. */
export const MsgId = {
  GetRouteRequest: 1,
  GetRouteResponse: 2,
  ReportStatusRequest: 3,
  GetHostRequest: 4,
  GetHostResponse: 5,
  ReportRequest: 6,
  ApiGetRouteRequest: 7,
  ApiGetRouteResponse: 8,
  /** Our extension (issue 15): SDK -> agent, register or renew one instance. */
  RegisterRequest: 9,
  RegisterResponse: 10,
  /** Our extension (issue 15): SDK -> agent, deregister one instance (RegisterRequest body). */
  DeregisterRequest: 11,
  /** RegisterResponse body. */
  DeregisterResponse: 12,
  /** Our extension (issue 15): agent -> dns, the agent's registrations (renewals and removals). */
  LeaseBatch: 13,
} as const;

export type MsgId = (typeof MsgId)[keyof typeof MsgId];

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(MsgId).map(([k, v]) => [v, k]));

/** Human name of a msgid for logs and metrics labels; unknown ids print as `unknown(N)`. */
export function msgIdName(id: number): string {
  return NAMES[id] ?? `unknown(${id})`;
}
