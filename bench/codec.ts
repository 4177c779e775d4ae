/**
 * Codec micro-benchmark: encode + decode of GetHostResponse (the agent's hottest message), plus
 * frame encoding and streaming frame decoding. Target (issue 2): encode + decode ≤ 500 ns.
 *
 *   npm run bench:codec
 */
import { cpus } from 'node:os';
import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  FrameDecoder,
  ipToWire,
  MsgId,
} from '../src/protocol/index.js';

const msg = {
  seq: 123456,
  modid: 10001,
  cmdid: 1001,
  retcode: 0,
  host: { ip: ipToWire('192.168.1.177'), port: 9000 },
};

function bench(name: string, iterations: number, fn: () => void): { name: string; nsPerOp: number } {
  for (let i = 0; i < 200_000; i++) fn(); // warm-up: let the JIT settle
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    runs.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  runs.sort((a, b) => a - b);
  return { name, nsPerOp: runs[2] as number }; // median of 5
}

let sink = 0;
const body = encodeMessage(MsgId.GetHostResponse, msg);
const frame = encodeFrame(MsgId.GetHostResponse, body);
const stream = Buffer.concat(Array.from({ length: 100 }, () => frame));
const decoder = new FrameDecoder();

const results = [
  bench('GetHostResponse encode+decode', 2_000_000, () => {
    const b = encodeMessage(MsgId.GetHostResponse, msg);
    sink += decodeMessage(MsgId.GetHostResponse, b).seq;
  }),
  bench('GetHostResponse encode', 2_000_000, () => {
    sink += encodeMessage(MsgId.GetHostResponse, msg).length;
  }),
  bench('GetHostResponse decode', 2_000_000, () => {
    sink += decodeMessage(MsgId.GetHostResponse, body).seq;
  }),
  bench('encode message + frame', 2_000_000, () => {
    sink += encodeFrame(MsgId.GetHostResponse, encodeMessage(MsgId.GetHostResponse, msg)).length;
  }),
  bench('FrameDecoder.push, per frame (100 coalesced)', 20_000, () => {
    sink += decoder.push(stream).length;
  }),
];
results[4]!.nsPerOp /= 100;

console.log(
  `codec micro-benchmark — node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}`,
);
console.log('| operation | ns/op | ops/s |');
console.log('|---|---:|---:|');
for (const r of results)
  console.log(
    `| ${r.name} | ${r.nsPerOp.toFixed(0)} | ${Math.round(1e9 / r.nsPerOp).toLocaleString('en-US')} |`,
  );
if (sink === 42) console.log('');
