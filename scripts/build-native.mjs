#!/usr/bin/env node
// Builds the native addon (native/binding.gyp) from source with node-gyp against this machine's Node
// headers. Run by `npm install`/`npm ci` (the `install` script) and by `npm run build`.
//
// Never downloads anything: node-gyp gets --nodedir pointing at installed headers (npm's `nodedir`
// setting, the headers next to the node binary, or node-gyp's own cache); without headers it does not
// run. A failed build never fails the install: it prints one warning, records the reason in
// native/build/BUILD-FAILED.txt (src/native/index.ts reports it) and Lars falls back to file mode.
//
// Flags: --force rebuilds even when the addon is newer than its sources; --quiet prints nothing on success.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const output = join(nativeDir, 'build', 'Release', 'lars_native.node');
const failedMarker = join(nativeDir, 'build', 'BUILD-FAILED.txt');
const force = process.argv.includes('--force');
const quiet = process.argv.includes('--quiet');

function warn(reason, details = '') {
  mkdirSync(dirname(failedMarker), { recursive: true });
  writeFileSync(failedMarker, `${reason}\n${details}\n`);
  process.stderr.write(
    `lars: warning: native addon not built (${reason}); ` +
      'lars shm and peer credentials fall back to /dev/shm file mode' +
      (details ? ` (build log: ${failedMarker})` : '') +
      '.\n',
  );
  process.exit(0);
}

function newestSource() {
  const files = [
    join(nativeDir, 'binding.gyp'),
    ...readdirSync(join(nativeDir, 'src')).map((f) => join(nativeDir, 'src', f)),
  ];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && existsSync(c));
}

/** A directory whose include/node/common.gypi exists: node-gyp uses it and downloads nothing. */
function findNodeDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    join(dirname(process.execPath), '..'),
    join(homedir(), '.cache', 'node-gyp', process.versions.node),
  ];
  return candidates.find((c) => c && existsSync(join(c, 'include', 'node', 'common.gypi')));
}

if (process.platform !== 'linux') warn(`platform ${process.platform} is not supported (Linux only)`);
if (!force && existsSync(output) && statSync(output).mtimeMs >= newestSource()) {
  if (!quiet) process.stdout.write('lars: native addon up to date\n');
  process.exit(0);
}
const nodeGyp = findNodeGyp();
if (!nodeGyp) warn('node-gyp not found (neither npm_config_node_gyp nor the copy bundled with npm)');
const nodeDir = findNodeDir();
if (!nodeDir)
  warn(`Node ${process.version} headers not found (set npm's nodedir to a directory with include/node)`);

rmSync(failedMarker, { force: true });
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodeDir}`, '--release'], {
  cwd: nativeDir,
  encoding: 'utf8',
  env: { ...process.env, npm_config_nodedir: nodeDir },
});
if (result.status !== 0 || !existsSync(output)) {
  const log = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
  warn(
    `node-gyp rebuild failed with ${result.error?.message ?? `exit ${result.status ?? result.signal}`}`,
    log,
  );
}
if (!quiet) process.stdout.write(`lars: native addon built (${output})\n`);
