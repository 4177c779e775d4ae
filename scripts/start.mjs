#!/usr/bin/env node
// `npm start`: build only when a source changed since the last build (saying so, with progress),
// then run `lars up --demo` with any extra arguments (`npm start -- --data-dir /tmp/x`).
//
// Up to date means: dist/.build-stamp (written by scripts/copy-generated.mjs at the end of every
// successful tsc run) is newer than every file tsc or the copy step reads. The native addon has its
// own check (scripts/build-native.mjs rebuilds only when its sources are newer), run every time.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const STAMP = join(root, 'dist', '.build-stamp');
const INPUT_DIRS = ['src', 'bench', 'proto'];
const INPUT_FILES = ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/copy-generated.mjs'];
const HEARTBEAT_MS = 10_000;

function* files(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (e.isFile()) yield p;
  }
}

/** The inputs under `dir` newer than its dist/.build-stamp (all of them when there is no stamp). */
export function changedSources(dir = root) {
  const stamp = join(dir, 'dist', '.build-stamp');
  const stampMs = existsSync(stamp) ? statSync(stamp).mtimeMs : -1;
  const inputs = [
    ...INPUT_DIRS.flatMap((d) => [...files(join(dir, d))]),
    ...INPUT_FILES.map((f) => join(dir, f)),
  ];
  return inputs.filter((f) => existsSync(f) && statSync(f).mtimeMs > stampMs).map((f) => relative(dir, f));
}

function say(line) {
  process.stderr.write(`lars start: ${line}\n`);
}

function build(changed) {
  const why = existsSync(STAMP)
    ? `${changed.length} source file${changed.length === 1 ? '' : 's'} changed since the last build (${changed.slice(0, 3).join(', ')}${changed.length > 3 ? ', …' : ''})`
    : 'no build yet';
  say(`building: ${why}. This takes a while (tsc)…`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
    const beat = setInterval(
      () => say(`still building… ${Math.round((Date.now() - started) / 1000)} s`),
      HEARTBEAT_MS,
    );
    child.on('exit', (code) => {
      clearInterval(beat);
      if (code === 0) say(`built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      else say(`build failed (exit ${code}); fix the errors above and run npm start again`);
      resolve(code ?? 1);
    });
  });
}

async function main() {
  const changed = changedSources();
  if (changed.length > 0) {
    const code = await build(changed);
    if (code !== 0) process.exit(code);
  } else {
    say('dist is up to date with the sources; not rebuilding');
    const native = spawnSync(process.execPath, [join(root, 'scripts/build-native.mjs'), '--quiet'], {
      stdio: 'inherit',
    });
    if (native.status !== 0) process.exit(native.status ?? 1);
  }
  // Run the CLI in this process: no second Node start, and signals reach lars up directly.
  const cli = join(root, 'dist/src/cli/main.js');
  process.argv = [process.argv[0], cli, 'up', '--demo', ...process.argv.slice(2)];
  await import(pathToFileURL(cli).href);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
