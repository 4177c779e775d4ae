import { chmodSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClosedError, TimeoutError } from '../errors.js';
import { pathHash } from '../net/unix-socket-path.js';
import { LineSplitter } from './line-splitter.js';
import type { StatusSnapshot } from './status.js';

/**
 * How `lars status` and `lars stop` reach a running master: a unix socket in the data directory
 * (one JSON request line, one JSON reply line) and a state file beside it that outlives the master,
 * so that status can still say "not running (last master pid N)" after a crash or SIGKILL.
 */

export const STATE_FILE = 'supervisor.json';
export const SOCKET_FILE = 'supervisor.sock';
/** Unix socket paths are limited to ~108 bytes; longer data directories use a socket in tmpdir. */
const MAX_SOCKET_PATH = 100;
const MAX_REQUEST_BYTES = 64 * 1024;

export function controlPaths(dataDir: string): { socket: string; state: string } {
  let socket = join(dataDir, SOCKET_FILE);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    socket = join(tmpdir(), `lars-${pathHash(dataDir)}.sock`);
  }
  return { socket, state: join(dataDir, STATE_FILE) };
}

export type ControlRequest = { cmd: 'status'; health?: boolean } | { cmd: 'stop' } | { cmd: 'reload' };
export type ControlReply = { ok: true; pid: number; status?: StatusSnapshot } | { ok: false; error: string };

/** Writes the state file atomically (temporary file + rename). Never throws. */
export function writeStateFile(path: string, snapshot: StatusSnapshot): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(snapshot, null, 2) + '\n');
    renameSync(tmp, path);
  } catch {
    // Status falls back to the control socket; a full disk must not stop the master.
  }
}

export function readStateFile(path: string): StatusSnapshot | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as StatusSnapshot;
  } catch {
    return undefined;
  }
}

/** True when a process with this pid exists (signal 0 probe). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The master's side. `handle` answers each request; the socket is owner-only (anyone who can
 * connect can stop the stack).
 */
export class ControlServer {
  private readonly server: Server;
  private listening = false;

  constructor(
    private readonly path: string,
    handle: (req: ControlRequest) => Promise<ControlReply>,
  ) {
    this.server = createServer((conn) => {
      conn.setEncoding('utf8');
      conn.on('error', () => {});
      const splitter = new LineSplitter(MAX_REQUEST_BYTES);
      let answered = false;
      conn.on('data', (chunk: string) => {
        const line = splitter.push(chunk)[0];
        if (line === undefined || answered) return;
        answered = true;
        let req: ControlRequest;
        try {
          req = JSON.parse(line) as ControlRequest;
        } catch {
          conn.end(JSON.stringify({ ok: false, error: 'request is not JSON' }) + '\n');
          return;
        }
        handle(req)
          .catch((err: unknown): ControlReply => ({ ok: false, error: (err as Error).message }))
          .then((reply) => conn.end(JSON.stringify(reply) + '\n'));
      });
    });
  }

  /**
   * Listens; a socket file left by a dead master is removed first, a live master is an error
   * (resolves with that master's pid instead of listening).
   */
  async listen(): Promise<{ busyPid?: number }> {
    const other = await controlRequest(this.path, { cmd: 'status', health: false }, 1_000).catch(
      () => undefined,
    );
    if (other?.ok) return { busyPid: other.pid };
    try {
      unlinkSync(this.path);
    } catch {
      // Not there: fine.
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
    try {
      chmodSync(this.path, 0o600);
    } catch {
      // Best effort: the data directory's permissions still apply.
    }
    return {};
  }

  close(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** One request to a master's control socket. Rejects when nothing listens or on timeout. */
export function controlRequest(path: string, req: ControlRequest, timeoutMs: number): Promise<ControlReply> {
  const timeoutErr = new TimeoutError(`no answer from ${path} within ${timeoutMs} ms`);
  return new Promise((resolve, reject) => {
    const conn = connect(path);
    const splitter = new LineSplitter(16 * 1024 * 1024);
    let reply: ControlReply | undefined;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(timeoutErr);
    }, timeoutMs);
    timer.unref();
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(req) + '\n'));
    conn.on('data', (chunk: string) => {
      const line = splitter.push(chunk)[0];
      if (line === undefined || reply) return;
      try {
        reply = JSON.parse(line) as ControlReply;
      } catch {
        reply = { ok: false, error: 'master sent a malformed reply' };
      }
      conn.end();
    });
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on('close', () => {
      clearTimeout(timer);
      if (reply) resolve(reply);
      else reject(new ClosedError(`${path}: connection closed without a reply`));
    });
  });
}
