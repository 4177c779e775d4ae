import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { register, reporterFlags, reporterListen, reporterOptions } from '../src/cli/commands/reporter.js';
import { loadConfig } from '../src/config/index.js';
import { silentLogger } from '../src/log/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'lars-reporter-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const env = {}; // no LARS_* overrides from the test runner's environment

describe('lars reporter options', () => {
  it('listens on [reporter] ip/port by default, on [reactor] when the file has it, on flags above both', () => {
    const plain = loadConfig({
      env,
      file: configFile('a.conf', '[reporter]\nip = 127.0.0.2\nport = 7900\n'),
    });
    expect(reporterListen(plain)).toEqual({ host: '127.0.0.2', port: 7900 });

    // The original lars_reporter.conf layout: [reactor] ip/port is where the reporter listens.
    const original = loadConfig({
      env,
      file: configFile('b.conf', '[reactor]\nip = 0.0.0.0\nport = 7901\n[reporter]\nport = 7900\n'),
    });
    expect(reporterListen(original)).toEqual({ host: '0.0.0.0', port: 7901 });

    const o = { host: '127.0.0.3', port: '0' };
    const flagged = loadConfig({
      env,
      file: configFile('c.conf', '[reporter]\nip = 127.0.0.2\nport = 7900\n'),
      flags: reporterFlags(o),
    });
    expect(reporterListen(flagged, { host: true, port: true })).toEqual({ host: '127.0.0.3', port: 0 });

    expect(reporterListen(loadConfig({ env }))).toEqual({ host: '127.0.0.1', port: 7779 });
  });

  it('maps [reporter] and [reactor] keys to the service options', () => {
    const loaded = loadConfig({
      env,
      file: configFile(
        'd.conf',
        '[reactor]\nmaxConn = 50\nmaxOutboundKb = 64\n[reporter]\ndb_thread_cnt = 5\nqueue_max_rows = 1000\nhistory_retention_days = 2\n',
      ),
    });
    expect(reporterOptions(loaded, 'sqlite::memory:', silentLogger, { httpPort: '9100' })).toMatchObject({
      dbUrl: 'sqlite::memory:',
      host: '127.0.0.1',
      port: 7779,
      httpPort: 9100,
      maxConnections: 50,
      maxOutboundBytes: 64 * 1024,
      writers: 5,
      queueMaxRows: 1000,
      historyRetentionDays: 2,
    });
  });

  it('rejects a bad --port with the flag named', () => {
    expect(() => reporterFlags({ port: '70000' })).toThrow(/--port/);
  });

  it('registers `lars reporter` with --db, --config, --host, --port, --http-port', () => {
    const program = new Command('lars');
    register(program);
    const cmd = program.commands.find((c) => c.name() === 'reporter')!;
    expect(cmd.options.map((o) => o.long).sort()).toEqual([
      '--config',
      '--db',
      '--host',
      '--http-port',
      '--port',
    ]);
  });
});
