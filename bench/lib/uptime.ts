import { readFileSync } from 'node:fs';

/** The load averages, as `uptime` prints them, for the record next to bench figures. */
export function uptime(): string {
  const [a, b, c] = readFileSync('/proc/loadavg', 'utf8').split(' ');
  return `load average: ${a}, ${b}, ${c}`;
}
