#!/usr/bin/env node
// tsc does not emit the generated protobuf JavaScript (it only reads its .d.ts): copy it into dist.
import { cpSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
cpSync(join(root, 'src/protocol/generated'), join(root, 'dist/src/protocol/generated'), { recursive: true });
