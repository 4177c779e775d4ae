import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LarsClient } from '../src/api/index.js';
import { ipToNumber } from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { unusedPorts } from './helpers/ports.js';
import { RawRouteClient } from './helpers/raw-route-client.js';
import { CLI, CLI_BUILT, eventually } from './supervisor-harness.js';

/**
 * The services still start with the original C++ Lars config files (test/fixtures/original: the
 * layout of lars_dns.conf, lars_reporter.conf with its misspelt `[repoter]`, and lb_agent.conf) now that `[reactor]` has keys of
 * ours (issue 11): only the ports are changed to free ones, threadNum lowered to 2, and the
 * database given with --db (the files name a MySQL database with the original's password).
 */
const suite = CLI_BUILT ? describe : describe.skip;
const FIXTURES = new URL('./fixtures/original/', import.meta.url);

function original(name: string, edits: Record<string, string>, dir: string): string {
  let text = readFileSync(new URL(name, FIXTURES), 'utf8');
  for (const [from, to] of Object.entries(edits)) text = text.replace(from, to);
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function run(args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const env: NodeJS.ProcessEnv = { ...process.env, LARS_LOG_LEVEL: 'info' };
  for (const k of Object.keys(env)) if (k.startsWith('LARS_') && k !== 'LARS_LOG_LEVEL') delete env[k];
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  onTestFinished(() => void child.kill('SIGKILL'));
  return { child, out: () => out, exited };
}

suite('original C++ Lars config files', () => {
  it('dns, reporter and agent start and serve with them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lars-orig-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const db = `sqlite:${join(dir, 'lars.db')}`;
    const store = await openStore(db);
    await store.migrate();
    await store.addHost(1, 1, ipToNumber('10.0.0.1'), 80);
    await store.close();
    const [dnsPort, repPort, a1, a2, a3] = await unusedPorts(5);

    const dnsConf = original(
      'lars_dns.conf',
      { 'port = 7778': `port = ${dnsPort}`, 'threadNum = 5': 'threadNum = 2' },
      dir,
    );
    const dns = run(['dns', '--config', dnsConf, '--db', db]);
    await eventually(() => (dns.out().includes('"dns listening"') ? true : undefined), 30_000, 'dns up');
    const c = await RawRouteClient.connect(dnsPort!);
    onTestFinished(() => c.close());
    c.ask(1, 1);
    expect((await c.waitForCount(1)).hosts.map((h) => h.port)).toEqual([80]);

    const repConf = original('lars_reporter.conf', { 'port = 7779': `port = ${repPort}` }, dir);
    const reporter = run(['reporter', '--config', repConf, '--db', db]);
    await eventually(
      () => (reporter.out().includes('"reporter listening"') ? true : undefined),
      30_000,
      'reporter up',
    );
    // The original file's misspelt [repoter] (issue 16): read as [reporter], with one warning.
    expect(reporter.out()).toContain('lars: warning: ');
    expect(reporter.out()).toContain('[repoter] is read as [reporter]');

    const agentConf = original(
      'lb_agent.conf',
      { 'port = 7779': `port = ${repPort}`, 'port = 7778': `port = ${dnsPort}` },
      dir,
    );
    const agent = run(['agent', '--config', agentConf, '--ports', `${a1},${a2},${a3}`, '--data-dir', dir]);
    await eventually(
      () => (agent.out().includes('"agent listening"') ? true : undefined),
      30_000,
      'agent up',
    );
    const client = new LarsClient({ ports: [a1!, a2!, a3!], timeoutMs: 2_000 });
    onTestFinished(() => client.close());
    const hosts = await client.regInit(1, 1, { tries: 200, intervalMs: 25 });
    expect(hosts).toEqual([{ ip: '10.0.0.1', port: 80 }]);
    client.report(1, 1, '10.0.0.1', 80, 0);

    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    // The agent's last statistics reached the reporter, which drains them into the database.
    reporter.child.kill('SIGTERM');
    expect(await reporter.exited).toBe(0);
    expect(reporter.out()).toMatch(/"written":1,"dropped":0/);
    dns.child.kill('SIGTERM');
    expect(await dns.exited).toBe(0);
  });
});
