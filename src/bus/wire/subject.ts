/**
 * Subjects, topics and names (DESIGN §9): `.`-separated tokens of printable ASCII without space,
 * at most 255 bytes and 16 tokens; a `$` prefix is reserved for the bus. Subscriptions may use NATS
 * wildcards: `*` (one token) and `>` (one or more trailing tokens, last only). Published subjects and
 * served topics never contain wildcards.
 *
 * The checkers return an error message (for LARS_ERR_INVALID_ARGUMENT) or undefined: callers on the
 * hot path avoid exceptions and allocations for valid input.
 */
export const MAX_SUBJECT_BYTES = 255;
export const MAX_SUBJECT_TOKENS = 16;
export const MAX_NAME_BYTES = 64;

const DOT = 0x2e;
const STAR = 0x2a;
const GT = 0x3e;
const DOLLAR = 0x24;

function check(subject: string, what: string, wildcards: boolean): string | undefined {
  const n = subject.length;
  if (n === 0) return `${what} is empty`;
  if (n > MAX_SUBJECT_BYTES) return `${what} is ${n} bytes long, more than ${MAX_SUBJECT_BYTES}`;
  if (subject.charCodeAt(0) === DOLLAR) return `${what} ${JSON.stringify(subject)}: the $ prefix is reserved`;
  let tokens = 1;
  let tokenStart = 0;
  for (let i = 0; i <= n; i++) {
    const c = i === n ? DOT : subject.charCodeAt(i);
    if (c === DOT) {
      const len = i - tokenStart;
      if (len === 0) return `${what} ${JSON.stringify(subject)} has an empty token`;
      if (i < n && ++tokens > MAX_SUBJECT_TOKENS)
        return `${what} ${JSON.stringify(subject)} has more than ${MAX_SUBJECT_TOKENS} tokens`;
      tokenStart = i + 1;
      continue;
    }
    if (c <= 0x20 || c >= 0x7f)
      return `${what} ${JSON.stringify(subject)}: only printable ASCII without spaces is allowed`;
    if (c === STAR || c === GT) {
      if (!wildcards)
        return `${what} ${JSON.stringify(subject)}: wildcards (* >) are only valid in subscriptions`;
      const alone = i === tokenStart && (i + 1 === n || subject.charCodeAt(i + 1) === DOT);
      if (!alone) return `${what} ${JSON.stringify(subject)}: a wildcard must be a whole token`;
      if (c === GT && i + 1 !== n) return `${what} ${JSON.stringify(subject)}: > must be the last token`;
    }
  }
  return undefined;
}

/** A subject to publish to or a topic to serve/request: no wildcards. */
export function checkSubject(subject: string, what = 'subject'): string | undefined {
  return check(subject, what, false);
}

/** A subscription subject: wildcards allowed. */
export function checkSubscription(subject: string): string | undefined {
  return check(subject, 'subscription subject', true);
}

/** Proc and queue names: 1-64 bytes of printable ASCII without spaces. */
export function checkName(name: string, what: string): string | undefined {
  if (name.length === 0) return `${what} is empty`;
  if (name.length > MAX_NAME_BYTES) return `${what} is longer than ${MAX_NAME_BYTES} bytes`;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f)
      return `${what} ${JSON.stringify(name)}: only printable ASCII without spaces is allowed`;
  }
  return undefined;
}

/** Tokens of a valid subject. */
export function tokens(subject: string): string[] {
  return subject.split('.');
}
