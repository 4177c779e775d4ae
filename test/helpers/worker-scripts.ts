/**
 * Worker threads run plain Node, without vitest's TypeScript transform: tests start them from a
 * bootstrap that installs the test-only hooks (fixtures/net-ts-hooks.mjs) and then imports the
 * TypeScript entry. Production workers load the compiled dist/ files.
 */
function tsWorker(entry: string): URL {
  return new URL(
    'data:text/javascript,' +
      encodeURIComponent(
        `import { register } from 'node:module';
         register(${JSON.stringify(new URL('../fixtures/net-ts-hooks.mjs', import.meta.url).href)});
         await import(${JSON.stringify(new URL(entry, import.meta.url).href)});`,
      ),
  );
}

/** The reporter's SQLite writer thread. */
export const sqliteWorkerScript = tsWorker('../../src/reporter/sqlite-writer-worker.ts');
