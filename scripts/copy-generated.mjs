#!/usr/bin/env node
// tsc emits only .ts sources. Copy what it does not: the generated protobuf JavaScript of the Lars
// protocol and of the bus's control frames (tsc only reads their .d.ts), and the web console's
// static UI (HTML/CSS/JS served from dist/src/web/public).
import { cpSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
cpSync(join(root, 'src/protocol/generated'), join(root, 'dist/src/protocol/generated'), { recursive: true });
cpSync(join(root, 'src/bus/generated'), join(root, 'dist/src/bus/generated'), { recursive: true });
cpSync(join(root, 'src/web/public'), join(root, 'dist/src/web/public'), { recursive: true });

// Last step of a successful build: `npm start` (scripts/start.mjs) rebuilds only when a source is
// newer than this stamp.
writeFileSync(join(root, 'dist', '.build-stamp'), `${new Date().toISOString()}\n`);
