import { connect, type Socket } from 'node:net';
import { Latch } from './latch.js';

/**
 * A route-protocol client built from raw bytes, on purpose NOT using src/protocol: it hand-encodes
 * GetRouteRequest frames and hand-decodes GetRouteResponse protobuf, so tests check the service
 * against the wire format of DESIGN §2 rather than against our own codec.
 */

export interface RawRoute {
  msgid: number;
  modid: number;
  cmdid: number;
  hosts: Array<{ ip: number; port: number }>;
  /** Fields the original's schema does not have (skipped, as protobuf skips unknown fields). */
  unknownFields: number;
}

function varint(n: number): number[] {
  // int32 fields: negative values are sign-extended to 64 bits (10 bytes).
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return out;
}

export function rawGetRouteFrame(modid: number, cmdid: number, msgid = 1): Buffer {
  const body = Buffer.from([0x08, ...varint(modid), 0x10, ...varint(cmdid)]);
  const header = Buffer.alloc(8);
  header.writeInt32LE(msgid, 0);
  header.writeInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  varint(): bigint {
    let shift = 0n;
    let out = 0n;
    for (;;) {
      const b = this.buf[this.pos++] as number;
      out |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return out;
      shift += 7n;
    }
  }
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }
  /** Skips one field's value, as protobuf does with a field number its schema lacks. */
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.pos += Number(this.varint());
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`raw client: wire type ${wireType} not expected`);
  }
}

export function parseRawRouteBody(msgid: number, body: Buffer): RawRoute {
  const r = new Reader(body);
  // The original's schema (lars.proto of the C++ Lars): GetRouteResponse{modid=1, cmdid=2,
  // repeated HostInfo host=3}, HostInfo{ip=1, port=2}. Anything else is an unknown field.
  const out: RawRoute = { msgid, modid: 0, cmdid: 0, hosts: [], unknownFields: 0 };
  while (r.pos < body.length) {
    const tag = Number(r.varint());
    const field = tag >> 3;
    if (field === 1 && (tag & 7) === 0) out.modid = r.int32();
    else if (field === 2 && (tag & 7) === 0) out.cmdid = r.int32();
    else if (field === 3 && (tag & 7) === 2) {
      const len = Number(r.varint());
      const end = r.pos + len;
      const host = { ip: 0, port: 0 };
      while (r.pos < end) {
        const t = Number(r.varint());
        if (t >> 3 === 1 && (t & 7) === 0) host.ip = r.int32();
        else if (t >> 3 === 2 && (t & 7) === 0) host.port = r.int32();
        else {
          out.unknownFields++;
          r.skip(t & 7);
        }
      }
      out.hosts.push(host);
    } else {
      out.unknownFields++;
      r.skip(tag & 7);
    }
  }
  return out;
}

/** Connects, sends hand-built frames, collects hand-parsed route responses. */
export class RawRouteClient {
  readonly routes: RawRoute[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: Array<{ n: number; latch: Latch }> = [];
  private readonly closeLatch = new Latch(1, 'raw client closed');

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.closeLatch.countDown();
    });
  }

  static connect(port: number): Promise<RawRouteClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(new RawRouteClient(s)));
      s.once('error', reject);
    });
  }

  ask(modid: number, cmdid: number): void {
    this.socket.write(rawGetRouteFrame(modid, cmdid));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Resolves once `n` responses in total have arrived (fails after timeoutMs). */
  async waitForCount(n: number, timeoutMs = 5_000): Promise<RawRoute> {
    if (this.routes.length < n) {
      const latch = new Latch(1, `raw client: ${n} responses (have ${this.routes.length})`);
      this.waiters.push({ n, latch });
      await latch.wait(timeoutMs);
    }
    return this.routes[n - 1] as RawRoute;
  }

  waitClosed(timeoutMs = 5_000): Promise<void> {
    return this.closeLatch.wait(timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 8) {
      const msgid = this.buf.readInt32LE(0);
      const len = this.buf.readInt32LE(4);
      if (this.buf.length < 8 + len) break;
      this.routes.push(parseRawRouteBody(msgid, this.buf.subarray(8, 8 + len)));
      this.buf = this.buf.subarray(8 + len);
    }
    for (const w of this.waiters.slice()) {
      if (this.routes.length >= w.n) {
        w.latch.countDown();
        this.waiters.splice(this.waiters.indexOf(w), 1);
      }
    }
  }
}
