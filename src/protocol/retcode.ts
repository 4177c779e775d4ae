/** Return codes of GetHostResponse (DESIGN §2). */
export const RetCode = {
  SUCC: 0,
  /** Every host of the route is overloaded. */
  OVERLOAD: 1,
  SYSTEM_ERROR: 2,
  /** Route unknown, or not fetched from dns yet. */
  NOEXIST: 3,
} as const;

export type RetCode = (typeof RetCode)[keyof typeof RetCode];

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(RetCode).map(([k, v]) => [v, k]));

export function retCodeName(code: number): string {
  return NAMES[code] ?? `UNKNOWN(${code})`;
}
