import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, SCHEMA } from '../src/config/index.js';
import { ConfigError, ErrorCode } from '../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'lars-config-'));
let n = 0;
function file(text: string): string {
  const p = join(dir, `c${n++}.ini`);
  writeFileSync(p, text);
  return p;
}
function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe(ErrorCode.CONFIG);
    return e as ConfigError;
  }
  throw new ConfigError('expected a ConfigError');
}

describe('config', () => {
  it('uses documented defaults without a file', () => {
    const { config } = loadConfig({ env: {} });
    expect(config.loadbalance.probe_num).toBe(10);
    expect(config.loadbalance.init_succ_cnt).toBe(180);
    expect(config.loadbalance.err_rate).toBe(0.1);
    expect(config.dnsserver.port).toBe(7778);
    expect(config.reporter.port).toBe(7779);
    expect(config.agent.ports).toEqual([8888, 8889, 8890]);
    expect(Object.isFrozen(config.loadbalance)).toBe(true);
  });

  it('reads the original layout', () => {
    const f = file(`# agent conf
[reactor]
ip = 0.0.0.0
port = 7778
maxConn = 1024
threadNum = 2

[mysql]
db_host = 127.0.0.1
db_port = 3306
db_user = root
db_passwd = "secret"
db_name = lars_dns

[loadbalance]
probe_num = 5
err_rate = 0.2
idle_timeout = 30

[dnsserver]
ip = 10.0.0.1
port = 7000

[reporter]
ip = reporter.internal
port = 7001
db_thread_cnt = 4
`);
    const { config, fileSections } = loadConfig({ file: f, env: {} });
    expect(config.reactor).toMatchObject({ ip: '0.0.0.0', port: 7778, maxConn: 1024, threadNum: 2 });
    expect(config.mysql.db_passwd).toBe('secret');
    expect(config.loadbalance).toMatchObject({
      probe_num: 5,
      err_rate: 0.2,
      idle_timeout: 30,
      succ_rate: 0.92,
    });
    expect(config.dnsserver).toEqual({ ip: '10.0.0.1', port: 7000 });
    expect(config.reporter).toMatchObject({ ip: 'reporter.internal', port: 7001, db_thread_cnt: 4 });
    expect(fileSections.has('reactor')).toBe(true);
    expect(fileSections.has('web')).toBe(false);
  });

  it('rejects a misspelled section, naming file, line and a suggestion', () => {
    const f = file('[reportr]\nip = 127.0.0.1\n');
    const e = errorOf(() => loadConfig({ file: f, env: {} }));
    expect(e.message).toContain(`${f}:1`);
    expect(e.message).toContain('unknown section [reportr]');
    expect(e.message).toContain('did you mean [reporter]?');
    expect(e.file).toBe(f);
    expect(e.section).toBe('reportr');
  });

  it("reads the original lars_reporter.conf's misspelt [repoter] as [reporter], with a warning (issue 16)", () => {
    const f = file('[reactor]\nport = 7779\n\n[repoter]\ndb_thread_cnt = 5\n');
    const loaded = loadConfig({ file: f, env: {} });
    expect(loaded.config.reporter.db_thread_cnt).toBe(5);
    expect(loaded.fileSections.has('reporter')).toBe(true);
    expect(loaded.warnings).toEqual([
      `${f}:4: [repoter] is read as [reporter] (the original Lars ignored this misspelt section and used its defaults)`,
    ]);
    expect(loadConfig({ file: file('[reporter]\nport = 1\n'), env: {} }).warnings).toEqual([]);
    const both = file('[reporter]\ndb_thread_cnt = 2\n[repoter]\ndb_thread_cnt = 5\n');
    expect(errorOf(() => loadConfig({ file: both, env: {} })).message).toContain(
      `${both}:4: [repoter] db_thread_cnt is set twice (also in [reporter] on line 2)`,
    );
  });

  it('rejects an unknown key naming section and key', () => {
    const f = file('[loadbalance]\nprobe_num = 3\nprobenum = 4\n');
    const e = errorOf(() => loadConfig({ file: f, env: {} }));
    expect(e.message).toContain(`${f}:3: [loadbalance] probenum`);
    expect(e.message).toContain('did you mean "probe_num"?');
    expect(e.key).toBe('probenum');
  });

  it.each([
    ['[loadbalance]\nprobe_num = ten\n', 'expected an integer'],
    ['[loadbalance]\nprobe_num = 0\n', 'must be at least 1'],
    ['[loadbalance]\nerr_rate = 1.5\n', 'must be at most 1'],
    ['[loadbalance]\nerr_rate = 0\n', 'must be greater than 0'],
    ['[dnsserver]\nport = 70000\n', 'expected a port 0-65535'],
    ['[dnsserver]\nip = 10.0.0.300\n', 'expected an IPv4 address or a host name'],
    ['[agent]\nports = 8888,x\n', 'expected comma-separated ports'],
    ['[agent]\nports = 8888,8888\n', 'ports must be distinct'],
    ['[reporter]\nenabled = maybe\n', 'expected true or false'],
    ['probe_num = 1\n', 'appears before any [section] header'],
    ['[loadbalance]\nprobe_num = 1\nprobe_num = 2\n', 'is set twice (first on line 2)'],
    ['[loadbalance\n', 'malformed section header'],
    ['[loadbalance]\njust words\n', 'expected "key = value"'],
  ])('rejects %j: %s', (text, msg) => {
    const f = file(text);
    const e = errorOf(() => loadConfig({ file: f, env: {} }));
    expect(e.message).toContain(f);
    expect(e.message).toContain(msg);
  });

  it('reports an unreadable file', () => {
    const e = errorOf(() => loadConfig({ file: join(dir, 'missing.ini'), env: {} }));
    expect(e.message).toContain('cannot read config file');
  });

  it('environment overrides the file, flags override both', () => {
    const f = file('[loadbalance]\nprobe_num = 3\n[dnsserver]\nport = 7000\n');
    const env = {
      LARS_LOADBALANCE_PROBE_NUM: '4',
      LARS_DNSSERVER_PORT: '7100',
      LARS_TRACE: 'net',
      LARS_DB: 'x',
    };
    const { config } = loadConfig({
      file: f,
      env,
      flags: [{ section: 'dnsserver', key: 'port', value: '7200', flag: '--port' }],
    });
    expect(config.loadbalance.probe_num).toBe(4);
    expect(config.dnsserver.port).toBe(7200);
  });

  it('rejects an unknown LARS_ variable and a bad env value, naming the variable', () => {
    expect(errorOf(() => loadConfig({ env: { LARS_REPOTER_PORT: '1' } })).message).toContain(
      'LARS_REPOTER_PORT',
    );
    const e = errorOf(() => loadConfig({ env: { LARS_LOADBALANCE_ERR_RATE: 'high' } }));
    expect(e.message).toContain('LARS_LOADBALANCE_ERR_RATE');
    expect(e.message).toContain('[loadbalance] err_rate');
  });

  it('rejects a bad flag value naming the flag', () => {
    const e = errorOf(() =>
      loadConfig({ env: {}, flags: [{ section: 'dnsserver', key: 'port', value: 'abc', flag: '--port' }] }),
    );
    expect(e.message).toContain('flag --port');
  });

  it('docs/config.md documents every section and key', () => {
    const doc = readFileSync(new URL('../docs/config.md', import.meta.url), 'utf8');
    for (const [section, keys] of Object.entries(SCHEMA)) {
      expect(doc, `section [${section}]`).toContain(`[${section}]`);
      for (const key of Object.keys(keys))
        expect(doc, `[${section}] ${key}`).toMatch(new RegExp(`\\|\\s*\`${key}\`\\s*\\|`));
    }
  });
});

describe('[agent] caller_ip (issue 16)', () => {
  it('interface (the default), hostname (the original agent), an address; anything else names the key', async () => {
    const { localIpv4, resolveCallerIp } = await import('../src/cli/options.js');
    expect(loadConfig({ env: {} }).config.agent.caller_ip).toBe('interface');
    expect(await resolveCallerIp('interface')).toBe(localIpv4());
    const { lookup } = await import('node:dns/promises');
    const { hostname } = await import('node:os');
    const expected = await lookup(hostname(), { family: 4 }).then(
      (a) => a.address,
      () => undefined,
    );
    if (expected !== undefined) expect(await resolveCallerIp('hostname')).toBe(expected);
    expect(await resolveCallerIp('10.1.2.3')).toBe('10.1.2.3');
    await expect(resolveCallerIp('10.1.2.300')).rejects.toMatchObject({
      code: 'LARS_ERR_CONFIG',
      message: expect.stringContaining(
        '[agent] caller_ip: "10.1.2.300" is not interface, hostname or an IPv4 address',
      ),
    });
  });
});
