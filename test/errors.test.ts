import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, LarsError, TimeoutError } from '../src/errors.js';

describe('error registry', () => {
  it('docs/errors.md lists exactly the codes in src/errors.ts', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\|\s*`(LARS_ERR_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(Object.values(ErrorCode).sort());
  });

  it('codes are unique and well-formed', () => {
    const codes = Object.values(ErrorCode);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^LARS_ERR_[A-Z_]+$/);
  });

  it('errors carry code, class name and cause', () => {
    const e = new TimeoutError('x');
    expect(e).toBeInstanceOf(LarsError);
    expect(e.code).toBe('LARS_ERR_TIMEOUT');
    expect(e.name).toBe('TimeoutError');
    const wrapped = new LarsError(ErrorCode.STORE, 'query failed', { cause: e });
    expect(wrapped.cause).toBe(e);
  });
});
