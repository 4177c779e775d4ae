import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A process holding a port, as far as this user may see it. */
export interface PortHolder {
  pid: number;
  /** Its command line, shortened; '' when unreadable. */
  command: string;
}

const TCP_LISTEN = '0A';
const MAX_COMMAND_CHARS = 80;

/**
 * Which process holds `port` (Linux only, best effort): the socket's inode from /proc/net/{tcp,udp}[6]
 * (TCP: in LISTEN state), then the /proc/PID/fd link naming that inode. Processes of other users are
 * not visible without privileges; undefined then, and on any other platform.
 */
export function findPortHolder(proto: 'tcp' | 'udp', port: number): PortHolder | undefined {
  try {
    const inodes = socketInodes(proto, port);
    if (inodes.size === 0) return undefined;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      if (pid === process.pid) continue;
      if (holdsInode(pid, inodes)) return { pid, command: commandOf(pid) };
    }
  } catch {
    // No /proc (not Linux) or it cannot be read: the holder stays unknown.
  }
  return undefined;
}

function socketInodes(proto: 'tcp' | 'udp', port: number): Set<string> {
  const out = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      if (f.length < 10 || !f[1]?.endsWith(`:${hexPort}`)) continue;
      if (proto === 'tcp' && f[3] !== TCP_LISTEN) continue;
      if (f[9] && f[9] !== '0') out.add(f[9]);
    }
  }
  return out;
}

function holdsInode(pid: number, inodes: ReadonlySet<string>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1] as string)) return true;
    } catch {
      // The descriptor closed meanwhile.
    }
  }
  return false;
}

function commandOf(pid: number): string {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return cmd.length > MAX_COMMAND_CHARS ? `${cmd.slice(0, MAX_COMMAND_CHARS - 1)}…` : cmd;
  } catch {
    return '';
  }
}
