import { describe, expect, it } from 'vitest';
import { JsonLogger } from '../src/log/json-logger.js';

function capture(level?: 'debug' | 'info' | 'warn' | 'silent') {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const log = new JsonLogger({
    level,
    base: { component: 'agent', pid: 7 },
    write: (line) => {
      raw.push(line);
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { log, lines, raw };
}

describe('JsonLogger: pino-format JSON lines without pino', () => {
  it('writes one line per entry: numeric level, time, bound fields, fields, msg', () => {
    const { log, lines, raw } = capture();
    const before = Date.now();
    log.info({ port: 8888 }, 'agent listening');
    log.warn('bare message');
    expect(raw[0]!.endsWith('}\n')).toBe(true);
    expect(raw[0]!.split('\n')).toHaveLength(2);
    expect(lines[0]).toEqual({
      level: 30,
      time: expect.any(Number),
      component: 'agent',
      pid: 7,
      port: 8888,
      msg: 'agent listening',
    });
    expect(lines[0]!.time as number).toBeGreaterThanOrEqual(before);
    expect(lines[1]).toMatchObject({ level: 40, msg: 'bare message', component: 'agent' });
  });

  it('drops entries below its level; silent drops all', () => {
    const info = capture('info');
    info.log.debug({ a: 1 }, 'hidden');
    info.log.error({ a: 2 }, 'shown');
    expect(info.lines.map((l) => l.msg)).toEqual(['shown']);
    expect(info.log.isLevelEnabled('debug')).toBe(false);
    const debug = capture('debug');
    debug.log.debug({}, 'now shown');
    expect(debug.lines).toHaveLength(1);
    const silent = capture('silent');
    silent.log.fatal({}, 'not even this');
    expect(silent.raw).toEqual([]);
  });

  it('children add their bindings and keep the parent level and destination', () => {
    const { log, lines } = capture('warn');
    const child = log.child({ link: 'dns' }).child({ attempt: 2 });
    child.info({}, 'below warn');
    child.warn({ x: 1 }, 'reconnecting');
    expect(lines).toEqual([
      expect.objectContaining({ component: 'agent', link: 'dns', attempt: 2, x: 1, msg: 'reconnecting' }),
    ]);
  });

  it('serializes errors (type, message, stack, code) and survives what JSON cannot hold', () => {
    const { log, lines } = capture();
    const err = Object.assign(new TypeError('bad frame'), { code: 'LARS_ERR_BAD_FRAME' });
    log.error({ err }, 'dropped');
    log.error(new Error('given as the object'));
    const circular: Record<string, unknown> = { id: 1n };
    circular.self = circular;
    log.warn({ circular }, 'still logged');
    expect(lines[0]).toMatchObject({
      msg: 'dropped',
      err: {
        type: 'TypeError',
        message: 'bad frame',
        code: 'LARS_ERR_BAD_FRAME',
        stack: expect.stringContaining('bad frame'),
      },
    });
    expect(lines[1]).toMatchObject({
      err: { type: 'Error', message: 'given as the object' },
      msg: 'given as the object',
    });
    expect(lines[2]).toMatchObject({
      msg: 'still logged',
      logError: expect.stringContaining('unserializable'),
    });
  });
});
