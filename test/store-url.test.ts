import { describe, expect, it } from 'vitest';
import { ErrorCode, StoreError } from '../src/errors.js';
import { DEFAULT_STORE_URL, parseStoreUrl, redact } from '../src/store/url.js';

function urlError(raw: string): StoreError {
  try {
    parseStoreUrl(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe(ErrorCode.STORE_URL);
    return err as StoreError;
  }
  return expect.fail(`${raw} parsed`);
}

describe('parseStoreUrl', () => {
  it('parses sqlite files and memory', () => {
    expect(parseStoreUrl(DEFAULT_STORE_URL)).toMatchObject({
      kind: 'sqlite',
      path: './lars-data/lars.db',
      memory: false,
    });
    expect(parseStoreUrl('sqlite:/var/lib/lars/lars.db')).toMatchObject({
      kind: 'sqlite',
      path: '/var/lib/lars/lars.db',
    });
    expect(parseStoreUrl('sqlite:///var/lib/lars.db')).toMatchObject({
      kind: 'sqlite',
      path: '/var/lib/lars.db',
    });
    expect(parseStoreUrl('sqlite::memory:')).toMatchObject({
      kind: 'sqlite',
      path: ':memory:',
      memory: true,
    });
  });

  it('parses mysql and its mariadb alias, with defaults and percent-decoding', () => {
    expect(parseStoreUrl('mysql://lars:s%40cret@db.example:3307/lars_dns')).toEqual({
      kind: 'mysql',
      host: 'db.example',
      port: 3307,
      user: 'lars',
      password: 's@cret',
      database: 'lars_dns',
      display: 'mysql://lars:***@db.example:3307/lars_dns',
    });
    expect(parseStoreUrl('mariadb://root@127.0.0.1/x')).toMatchObject({
      kind: 'mysql',
      port: 3306,
      password: undefined,
    });
  });

  it('parses postgres and postgresql, IPv6 hosts, optional user', () => {
    expect(parseStoreUrl('postgres://postgres@127.0.0.1:5432/test')).toMatchObject({
      kind: 'postgres',
      host: '127.0.0.1',
      port: 5432,
      user: 'postgres',
      database: 'test',
    });
    expect(parseStoreUrl('postgresql://[::1]/lars')).toMatchObject({
      kind: 'postgres',
      host: '::1',
      port: 5432,
      user: undefined,
    });
  });

  it.each([
    ['', /empty/],
    ['lars.db', /missing scheme/],
    ['oracle://x/y', /unsupported scheme "oracle"/],
    ['sqlite:', /missing file path/],
    ['mysql://root@127.0.0.1:3306', /missing database name/],
    ['mysql://root@127.0.0.1:3306/', /missing database name/],
    ['mysql://127.0.0.1/db', /missing user/],
    ['postgres://u@h:99999/db', /malformed URL|invalid port/],
    ['postgres://u@h/db?sslmode=require', /query parameters are not supported: sslmode/],
    ['mysql:root@h/db', /expected "\/\/"/],
    ['postgres:///db', /missing host/],
  ])('rejects %j', (raw, message) => {
    expect(urlError(raw).message).toMatch(message);
  });

  it('never puts the password in an error message', () => {
    const err = urlError('mysql://u:topsecret@h:3306/');
    expect(err.message).not.toContain('topsecret');
    expect(redact('postgres://u:pw@h/db')).toBe('postgres://u:***@h/db');
  });
});
