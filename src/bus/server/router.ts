import { ReplyStatus } from '../wire/data-frame.js';
import { ProcState, type Proc } from './proc.js';

/** One served topic of a proc (seed RegisterRPC), with its in-flight credits. */
export class ServeReg {
  inFlight = 0;
  requests = 0;

  constructor(
    readonly proc: Proc,
    readonly sid: number,
    readonly topic: string,
    readonly queue: string,
    readonly concurrency: number,
  ) {}
}

/** A request relayed to a server and not answered yet. */
export class PendingRequest {
  constructor(
    readonly rid: number,
    readonly caller: Proc,
    readonly callerId: number,
    readonly server: ServeReg,
    readonly startMs: number,
    readonly deadlineMs: number,
  ) {}
}

class TopicServers {
  readonly regs: ServeReg[] = [];
  cursor = 0;
}

/** Extra time the bus keeps a request past the caller's timeout before forgetting it. */
const EXPIRY_GRACE_MS = 1_000;

/**
 * Request routing (DESIGN §9): each request goes to one normal server of its topic, round robin over
 * the topic's servers, skipping those at their in-flight limit (credits, seed 001 `activate_write`)
 * or not able to take more (`canTake`). No normal server: NO_RESPONDERS; normal ones all busy:
 * OVERLOADED. Topics match exactly (seed QueryTopic semantics); every server of a topic shares its
 * requests, the queue name only labels servers in queries.
 */
export class Router {
  readonly pending = new Map<number, PendingRequest>();
  private readonly topics = new Map<string, TopicServers>();
  private nextRid = 1;

  add(reg: ServeReg): void {
    let t = this.topics.get(reg.topic);
    if (!t) this.topics.set(reg.topic, (t = new TopicServers()));
    t.regs.push(reg);
  }

  remove(reg: ServeReg): void {
    const t = this.topics.get(reg.topic);
    if (!t) return;
    const i = t.regs.indexOf(reg);
    if (i >= 0) t.regs.splice(i, 1);
    if (t.regs.length === 0) this.topics.delete(reg.topic);
  }

  servers(topic: string): readonly ServeReg[] {
    return this.topics.get(topic)?.regs ?? [];
  }

  topicNames(): IterableIterator<string> {
    return this.topics.keys();
  }

  /** The server for the next request on `topic`, or why there is none. */
  pick(
    topic: string,
    canTake: (reg: ServeReg) => boolean,
  ): ServeReg | typeof ReplyStatus.NO_RESPONDERS | typeof ReplyStatus.OVERLOADED {
    const t = this.topics.get(topic);
    if (!t) return ReplyStatus.NO_RESPONDERS;
    const regs = t.regs;
    const n = regs.length;
    let busy = false;
    for (let k = 0; k < n; k++) {
      const i = (t.cursor + k) % n;
      const reg = regs[i] as ServeReg;
      if (reg.proc.state !== ProcState.NORMAL || reg.proc.conn === undefined) continue;
      if (reg.inFlight >= reg.concurrency || !canTake(reg)) {
        busy = true;
        continue;
      }
      t.cursor = i + 1;
      return reg;
    }
    return busy ? ReplyStatus.OVERLOADED : ReplyStatus.NO_RESPONDERS;
  }

  open(caller: Proc, callerId: number, reg: ServeReg, nowMs: number, timeoutMs: number): PendingRequest {
    const rid = this.nextRid;
    this.nextRid = this.nextRid >= 0xfffffffe ? 1 : this.nextRid + 1;
    const p = new PendingRequest(rid, caller, callerId, reg, nowMs, nowMs + timeoutMs + EXPIRY_GRACE_MS);
    this.pending.set(rid, p);
    reg.inFlight += 1;
    reg.requests += 1;
    return p;
  }

  /** Ends a pending request (answered, failed or expired) and returns its credit. */
  finish(p: PendingRequest): void {
    if (this.pending.delete(p.rid)) p.server.inFlight -= 1;
  }

  /** Pending requests whose caller's timeout (plus a grace) has passed. */
  expired(nowMs: number): PendingRequest[] {
    const out: PendingRequest[] = [];
    for (const p of this.pending.values()) if (p.deadlineMs <= nowMs) out.push(p);
    return out;
  }

  /** Pending requests served by `proc` (it died or left: they fail with CLOSED). */
  servedBy(proc: Proc): PendingRequest[] {
    const out: PendingRequest[] = [];
    for (const p of this.pending.values()) if (p.server.proc === proc) out.push(p);
    return out;
  }
}
