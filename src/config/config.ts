import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { isValidIpv4 } from '../protocol/ip.js';
import { parseIni } from './ini.js';
import { SCHEMA, type Config, type KeySpec, type SectionName } from './schema.js';

/**
 * Configuration is resolved once at start, in this order (later wins): schema defaults, the INI
 * file, `LARS_<SECTION>_<KEY>` environment variables, command-line flags. Every value is validated
 * against the schema; the first problem stops the service with a ConfigError whose message names
 * the file (or variable or flag), section and key. The result is deeply frozen.
 */

/** Environment variables that start with LARS_ but are not `LARS_<SECTION>_<KEY>` settings. */
export const RESERVED_ENV = new Set([
  'LARS_DB',
  'LARS_TRACE',
  'LARS_LOG_LEVEL',
  'LARS_DATA_DIR',
  'LARS_CONFIG',
  'LARS_ADMIN_PASSWORD',
  // `off` makes the native addon count as missing (src/native/native-addon.ts).
  'LARS_NATIVE',
  // `1`: the CLI prints the stack of an unexpected failure (src/cli/main.ts).
  'LARS_DEBUG',
]);
const RESERVED_ENV_PREFIXES = ['LARS_TEST_', 'LARS_BENCH_'];

/** A value set by a flag: section, key and the raw value, with the flag's name for messages. */
export interface FlagOverride {
  section: SectionName;
  key: string;
  value: string | number | boolean | readonly number[];
  flag: string;
}

export interface LoadConfigOptions {
  /** INI file path; undefined = defaults only. */
  file?: string | undefined;
  /** Environment to read LARS_* overrides from (default process.env). */
  env?: NodeJS.ProcessEnv;
  flags?: FlagOverride[];
}

export interface LoadedConfig {
  config: Config;
  /** Sections present in the file (some services interpret presence, e.g. [reactor]). */
  fileSections: ReadonlySet<string>;
  file: string | undefined;
  /** Things in the file read differently from the original C++ Lars (each names file and line). */
  warnings: readonly string[];
}

/**
 * Section names of original C++ Lars files that mean one of ours (issue 16): the original
 * lars_reporter.conf spells its section `[repoter]`, which the original reporter never read (its
 * db_thread_cnt stayed at the default, 3). We read it as `[reporter]`, and say so.
 */
export const SECTION_ALIASES: Readonly<Record<string, SectionName>> = { repoter: 'reporter' };

export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const values = defaults();
  const fileSections = new Set<string>();
  const warnings: string[] = [];
  const file = options.file;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new ConfigError(`${file}: cannot read config file: ${(cause as Error).message}`, { file });
    }
    const doc = parseIni(text, file);
    for (const s of doc.sections) {
      const alias = SECTION_ALIASES[s.name];
      if (alias !== undefined) {
        warnings.push(
          `${file}:${s.line}: [${s.name}] is read as [${alias}] (the original Lars ignored this misspelt section and used its defaults)`,
        );
        for (const e of doc.entries) {
          if (e.section !== s.name) continue;
          const twice = doc.entries.find((o) => o.section === alias && o.key === e.key);
          if (twice)
            throw new ConfigError(
              `${file}:${e.line}: [${s.name}] ${e.key} is set twice (also in [${alias}] on line ${twice.line})`,
              { file, section: alias, key: e.key },
            );
          e.section = alias;
        }
        s.name = alias;
      }
      if (!isSection(s.name)) {
        throw new ConfigError(
          `${file}:${s.line}: unknown section [${s.name}]${suggest(s.name, Object.keys(SCHEMA), '[', ']')}; known sections: ${Object.keys(
            SCHEMA,
          )
            .map((n) => `[${n}]`)
            .join(' ')}`,
          { file, section: s.name },
        );
      }
      fileSections.add(s.name);
    }
    for (const e of doc.entries) {
      const where = `${file}:${e.line}: [${e.section}] ${e.key}`;
      const spec = specOf(e.section as SectionName, e.key);
      if (!spec)
        throw unknownKey(where, e.section as SectionName, e.key, { file, section: e.section, key: e.key });
      values[e.section as SectionName][e.key] = coerce(spec, e.value, where, {
        file,
        section: e.section,
        key: e.key,
      });
    }
  }

  const env = options.env ?? process.env;
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('LARS_') || raw === undefined) continue;
    if (RESERVED_ENV.has(name) || RESERVED_ENV_PREFIXES.some((p) => name.startsWith(p))) continue;
    const target = envTarget(name);
    if (!target) {
      throw new ConfigError(
        `environment variable ${name} is not a Lars setting: expected LARS_<SECTION>_<KEY> (e.g. LARS_LOADBALANCE_PROBE_NUM) or one of ${[...RESERVED_ENV].join(', ')}`,
        { key: name },
      );
    }
    const spec = specOf(target.section, target.key) as KeySpec;
    values[target.section][target.key] = coerce(
      spec,
      raw,
      `environment ${name} ([${target.section}] ${target.key})`,
      {
        section: target.section,
        key: target.key,
      },
    );
  }

  for (const f of options.flags ?? []) {
    const spec = specOf(f.section, f.key);
    if (!spec) throw unknownKey(`flag ${f.flag}`, f.section, f.key, { section: f.section, key: f.key });
    const where = `flag ${f.flag} ([${f.section}] ${f.key})`;
    values[f.section][f.key] =
      typeof f.value === 'string'
        ? coerce(spec, f.value, where, { section: f.section, key: f.key })
        : check(spec, f.value, where, { section: f.section, key: f.key });
  }

  return { config: deepFreeze(values) as unknown as Config, fileSections, file, warnings };
}

type Mutable = Record<SectionName, Record<string, unknown>>;

function defaults(): Mutable {
  const out = {} as Mutable;
  for (const [section, keys] of Object.entries(SCHEMA)) {
    const s: Record<string, unknown> = {};
    for (const [key, spec] of Object.entries(keys)) s[key] = (spec as KeySpec).default;
    out[section as SectionName] = s;
  }
  return out;
}

function isSection(name: string): name is SectionName {
  return Object.prototype.hasOwnProperty.call(SCHEMA, name);
}

function specOf(section: SectionName, key: string): KeySpec | undefined {
  const keys = SCHEMA[section] as Record<string, KeySpec>;
  return Object.prototype.hasOwnProperty.call(keys, key) ? keys[key] : undefined;
}

function unknownKey(
  where: string,
  section: SectionName,
  key: string,
  at: { file?: string; section?: string; key?: string },
): ConfigError {
  const known = Object.keys(SCHEMA[section]);
  return new ConfigError(
    `${where}: unknown key "${key}" in [${section}]${suggest(key, known, '"', '"')}; known keys: ${known.join(', ')}`,
    at,
  );
}

/** Maps LARS_LOADBALANCE_PROBE_NUM -> loadbalance.probe_num (case-insensitive match on key names). */
function envTarget(name: string): { section: SectionName; key: string } | undefined {
  const rest = name.slice('LARS_'.length).toLowerCase();
  for (const section of Object.keys(SCHEMA) as SectionName[]) {
    if (!rest.startsWith(section + '_')) continue;
    const keyPart = rest.slice(section.length + 1);
    const key = Object.keys(SCHEMA[section]).find((k) => k.toLowerCase() === keyPart);
    if (key) return { section, key };
  }
  return undefined;
}

function coerce(
  spec: KeySpec,
  raw: string,
  where: string,
  at: { file?: string; section?: string; key?: string },
): unknown {
  const v = raw.trim();
  switch (spec.type) {
    case 'int':
    case 'port': {
      if (!/^-?\d+$/.test(v))
        throw new ConfigError(`${where}: expected an integer, got ${JSON.stringify(raw)}`, at);
      return check(spec, Number(v), where, at);
    }
    case 'number': {
      if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) {
        throw new ConfigError(`${where}: expected a number, got ${JSON.stringify(raw)}`, at);
      }
      return check(spec, Number(v), where, at);
    }
    case 'bool': {
      const t = v.toLowerCase();
      if (['true', 'yes', 'on', '1'].includes(t)) return true;
      if (['false', 'no', 'off', '0'].includes(t)) return false;
      throw new ConfigError(`${where}: expected true or false, got ${JSON.stringify(raw)}`, at);
    }
    case 'ports': {
      const parts = v.split(',').map((p) => p.trim());
      const ports = parts.map((p) => {
        if (!/^\d+$/.test(p))
          throw new ConfigError(`${where}: expected comma-separated ports, got ${JSON.stringify(raw)}`, at);
        return Number(p);
      });
      return check(spec, ports, where, at);
    }
    case 'host':
    case 'string':
      return check(spec, v, where, at);
  }
}

const HOSTNAME =
  /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function check(
  spec: KeySpec,
  value: unknown,
  where: string,
  at: { file?: string; section?: string; key?: string },
): unknown {
  const fail = (what: string): never => {
    throw new ConfigError(`${where}: ${what}, got ${JSON.stringify(value)}`, at);
  };
  switch (spec.type) {
    case 'int':
    case 'port':
      if (typeof value !== 'number' || !Number.isInteger(value)) fail('expected an integer');
      if (spec.type === 'port' && ((value as number) < 0 || (value as number) > 65535))
        fail('expected a port 0-65535');
      if (spec.min !== undefined && (value as number) < spec.min) fail(`must be at least ${spec.min}`);
      if (spec.max !== undefined && (value as number) > spec.max) fail(`must be at most ${spec.max}`);
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) fail('expected a number');
      if (spec.gt !== undefined && (value as number) <= spec.gt) fail(`must be greater than ${spec.gt}`);
      if (spec.min !== undefined && (value as number) < spec.min) fail(`must be at least ${spec.min}`);
      if (spec.max !== undefined && (value as number) > spec.max) fail(`must be at most ${spec.max}`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') fail('expected true or false');
      return value;
    case 'ports': {
      if (!Array.isArray(value) || value.length === 0) fail('expected at least one port');
      for (const p of value as number[]) {
        if (!Number.isInteger(p) || p < 1 || p > 65535) fail(`each port must be 1-65535 (bad: ${p})`);
      }
      if (new Set(value as number[]).size !== (value as number[]).length) fail('ports must be distinct');
      return Object.freeze([...(value as number[])]);
    }
    case 'host':
      // A name made only of digits and dots is meant as an IPv4 address and must be a valid one.
      if (
        typeof value !== 'string' ||
        !(isValidIpv4(value) || (HOSTNAME.test(value) && !/^[\d.]+$/.test(value)))
      ) {
        fail('expected an IPv4 address or a host name');
      }
      return value;
    case 'string':
      if (typeof value !== 'string') fail('expected a string');
      return value;
  }
}

/** ` (did you mean [reporter]?)` when a close match exists. */
function suggest(word: string, candidates: string[], open: string, close: string): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= 2 ? ` (did you mean ${open}${best}${close}?)` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
