/**
 * A small INI reader in the original Lars layout: `[section]` headers, `key = value` lines,
 * `#` or `;` comments on their own line. It keeps the line number of every entry so that
 * validation errors can name file, section, key and line. It does not interpret values.
 */
import { ConfigError } from '../errors.js';

export interface IniEntry {
  section: string;
  key: string;
  value: string;
  line: number;
}

export interface IniDocument {
  /** Sections in file order, with the line of their header. */
  sections: Array<{ name: string; line: number }>;
  entries: IniEntry[];
}

export function parseIni(text: string, file: string): IniDocument {
  const sections: IniDocument['sections'] = [];
  const entries: IniEntry[] = [];
  const seen = new Map<string, number>();
  let section: string | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('[')) {
      const m = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
      if (!m)
        throw new ConfigError(`${file}:${lineNo}: malformed section header ${JSON.stringify(line)}`, {
          file,
        });
      section = m[1] as string;
      sections.push({ name: section, line: lineNo });
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError(`${file}:${lineNo}: expected "key = value", got ${JSON.stringify(line)}`, {
        file,
        section,
      });
    }
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) {
      value = value.slice(1, -1);
    }
    if (section === undefined) {
      throw new ConfigError(`${file}:${lineNo}: key "${key}" appears before any [section] header`, {
        file,
        key,
      });
    }
    const id = `${section}\u0000${key}`;
    const prev = seen.get(id);
    if (prev !== undefined) {
      throw new ConfigError(`${file}:${lineNo}: [${section}] ${key} is set twice (first on line ${prev})`, {
        file,
        section,
        key,
      });
    }
    seen.set(id, lineNo);
    entries.push({ section, key, value, line: lineNo });
  }
  return { sections, entries };
}
