import { tokens } from '../wire/subject.js';

/** What the index needs to know about a subscription. */
export interface SubEntry {
  readonly subject: string;
  /** '' = not in a queue group. */
  readonly queue: string;
  /** NATS semantics: no hierarchical match. */
  readonly exact: boolean;
}

/** Subscribers of one queue name among the matches of a subject; one member gets each message. */
export class QueueGroup<S> {
  readonly members: S[] = [];
  /** Round-robin position (kept with the cached match, reset when the cache is invalidated). */
  cursor = 0;
  constructor(readonly name: string) {}
}

export interface MatchResult<S> {
  /** Subscriptions outside queue groups: each gets the message. */
  readonly plain: readonly S[];
  readonly groups: readonly QueueGroup<S>[];
}

class Node<S> {
  readonly children = new Map<string, Node<S>>();
  star: Node<S> | undefined;
  /** Subscriptions whose last token is `>` right below this node. */
  readonly gt: S[] = [];
  /** Subscriptions ending here, exact. */
  readonly exact: S[] = [];
  /** Subscriptions ending here, hierarchical: they also match every descendant. */
  readonly hier: S[] = [];

  isEmpty(): boolean {
    return (
      this.children.size === 0 &&
      this.star === undefined &&
      this.gt.length === 0 &&
      this.exact.length === 0 &&
      this.hier.length === 0
    );
  }
}

/** Results cached per published subject; the cache is dropped whole when it grows past this. */
const MAX_CACHED_SUBJECTS = 8_192;
const EMPTY: MatchResult<never> = Object.freeze({ plain: [], groups: [] });

/**
 * The subscription index (a token trie, like nats-server's sublist) with a per-subject result cache
 * invalidated on every (un)subscribe. Matching (DESIGN §9, fixing the seed's Find1 bug):
 * - hierarchical (default): `a.b` matches `a.b` and every descendant `a.b.c…`;
 * - `*` matches exactly one token, `>` one or more trailing tokens (NATS);
 * - exact: NATS semantics, `a.b` matches only `a.b`.
 * A subscription matches a subject at most once (one trie path per pattern).
 */
export class Sublist<S extends SubEntry> {
  private readonly root = new Node<S>();
  private readonly cache = new Map<string, MatchResult<S>>();
  private _count = 0;
  /** Bumped on every change; holders of a MatchResult compare it to know theirs is stale. */
  generation = 0;

  get count(): number {
    return this._count;
  }

  insert(sub: S): void {
    const toks = tokens(sub.subject);
    let node = this.root;
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as string;
      if (t === '>' && i === toks.length - 1) {
        node.gt.push(sub);
        this.changed(1);
        return;
      }
      if (t === '*') node = node.star ??= new Node<S>();
      else {
        let next = node.children.get(t);
        if (!next) node.children.set(t, (next = new Node<S>()));
        node = next;
      }
    }
    (sub.exact ? node.exact : node.hier).push(sub);
    this.changed(1);
  }

  /** Removes `sub`; false when it was not indexed. Empty trie nodes are pruned (no leak on churn). */
  remove(sub: S): boolean {
    const toks = tokens(sub.subject);
    const path: { parent: Node<S>; key: string | undefined }[] = [];
    let node = this.root;
    let list: S[] | undefined;
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as string;
      if (t === '>' && i === toks.length - 1) {
        list = node.gt;
        break;
      }
      const next = t === '*' ? node.star : node.children.get(t);
      if (!next) return false;
      path.push({ parent: node, key: t === '*' ? undefined : t });
      node = next;
    }
    list ??= sub.exact ? node.exact : node.hier;
    const at = list.indexOf(sub);
    if (at < 0) return false;
    list.splice(at, 1);
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const { parent, key } = path[i] as { parent: Node<S>; key: string | undefined };
      if (key === undefined) parent.star = undefined;
      else parent.children.delete(key);
      node = parent;
    }
    this.changed(-1);
    return true;
  }

  /** Every subscription matching a published subject (valid, no wildcards). */
  match(subject: string): MatchResult<S> {
    const hit = this.cache.get(subject);
    if (hit !== undefined) return hit;
    const found: S[] = [];
    collect(this.root, tokens(subject), 0, found);
    const result = found.length === 0 ? (EMPTY as MatchResult<S>) : partition(found);
    if (this.cache.size >= MAX_CACHED_SUBJECTS) this.cache.clear();
    this.cache.set(subject, result);
    return result;
  }

  private changed(delta: number): void {
    this._count += delta;
    this.generation += 1;
    this.cache.clear();
  }
}

function collect<S>(node: Node<S>, toks: string[], i: number, out: S[]): void {
  if (i === toks.length) {
    for (const s of node.exact) out.push(s);
    for (const s of node.hier) out.push(s);
    return;
  }
  // More tokens follow: hierarchical subscriptions ending here match this descendant.
  for (const s of node.hier) out.push(s);
  for (const s of node.gt) out.push(s);
  const child = node.children.get(toks[i] as string);
  if (child) collect(child, toks, i + 1, out);
  if (node.star) collect(node.star, toks, i + 1, out);
}

function partition<S extends SubEntry>(found: S[]): MatchResult<S> {
  const plain: S[] = [];
  let groups: Map<string, QueueGroup<S>> | undefined;
  for (const s of found) {
    if (s.queue === '') {
      plain.push(s);
      continue;
    }
    groups ??= new Map();
    let g = groups.get(s.queue);
    if (!g) groups.set(s.queue, (g = new QueueGroup<S>(s.queue)));
    g.members.push(s);
  }
  return { plain, groups: groups ? [...groups.values()] : [] };
}
