import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { bridgeSettingsFromConfig, defaultPrefix, natsSubjects } from '../src/bus/bridge/bridge-settings.js';
import { loadConfig } from '../src/config/index.js';
import { ErrorCode } from '../src/errors.js';
import { formatStatus, type StatusSnapshot } from '../src/supervisor/status.js';

function load(text: string) {
  const dir = mkdtempSync('/tmp/lars-cfg-');
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'lars.conf');
  writeFileSync(file, text);
  return loadConfig({ file, env: {} }).config;
}

describe('[bus.bridge] settings', () => {
  it('is off without url, and reads the two-host example of docs/bus.md', () => {
    expect(bridgeSettingsFromConfig(load('[bus]\noffline_ms = 3000\n'))).toBeUndefined();
    const s = bridgeSettingsFromConfig(
      load(
        [
          '[bus.bridge]',
          'url    = nats://nats.internal:4222',
          'prefix = lars.cam',
          '# video.meta and video.meta.* -> NATS lars.cam.video.meta...',
          'export = video.meta',
          'serve  = svc.thumb',
          'import = lars.cam.cmd, ops.>',
          '',
        ].join('\n'),
      ),
    );
    expect(s).toEqual({
      url: 'nats://nats.internal:4222',
      prefix: 'lars.cam',
      exports: ['video.meta'],
      imports: ['lars.cam.cmd', 'ops.>'],
      serves: ['svc.thumb'],
      forwards: [],
    });
    expect(natsSubjects('video.meta')).toEqual(['video.meta', 'video.meta.>']);
    expect(natsSubjects('ops.>')).toEqual(['ops.>']);
    expect(defaultPrefix('build-7.example.com')).toBe('lars.build-7');
    expect(bridgeSettingsFromConfig(load('[bus.bridge]\nurl = nats://x:4222\n'))!.prefix).toMatch(/^lars\./);
  });

  it('names the key of a bad value', () => {
    const bad = (text: string) => () =>
      bridgeSettingsFromConfig(load(`[bus.bridge]\nurl = nats://h:4222\n${text}\n`));
    expect(bad('export = a..b')).toThrow(expect.objectContaining({ code: ErrorCode.CONFIG, key: 'export' }));
    expect(bad('serve = svc.*')).toThrow(/\[bus.bridge\] serve/);
    expect(bad('prefix = lars.>')).toThrow(/\[bus.bridge\] prefix/);
    expect(() => bridgeSettingsFromConfig(load('[bus.bridge]\nurl = http://x\n'))).toThrow(
      /\[bus.bridge\] url/,
    );
    expect(() => load('[bus.bridge]\nexprot = x\n')).toThrow(/unknown key "exprot"/);
  });
});

describe('lars status and the bridge', () => {
  it('shows the bus as "ok, bridge: disconnected" when its bridge lost NATS', () => {
    const snap = {
      master: {
        pid: 1,
        state: 'running',
        startedAt: '',
        updatedAt: '',
        dataDir: '',
        database: '',
        configFile: null,
        controlSocket: '',
        dnsHandoff: false,
      },
      services: [
        {
          name: 'bus',
          state: 'running',
          workers: { wanted: 1, running: 1 },
          restarts: 0,
          recentCrashes: 0,
          listen: [],
          processes: [
            {
              pid: 2,
              role: 'worker',
              slot: 0,
              state: 'ready',
              ports: {},
              startedAt: '',
              health: { status: 'ok', detail: { status: 'ok', bridge: { state: 'disconnected' } } },
            },
          ],
        },
      ],
    } as unknown as StatusSnapshot;
    expect(formatStatus(snap, true)).toMatch(/^bus .*ok, bridge: disconnected$/m);
  });
});
