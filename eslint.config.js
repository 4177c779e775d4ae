import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'src/protocol/generated/**',
      'src/bus/generated/**',
      'lars-data/**',
      'test-artifacts/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        URL: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ThrowStatement > NewExpression[callee.name='Error']",
          message: 'Throw a LarsError subclass with a stable code (src/errors.ts).',
        },
      ],
    },
  },
  {
    // lars/shm: the client side of the shared-memory manager (the daemon lives in src/shm/daemon).
    files: ['src/shm/**/*.ts'],
    ignores: ['src/shm/daemon/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '**/daemon/**',
                '**/store/**',
                '**/dns/**',
                '**/agent/**',
                '**/reporter/**',
                '**/web/**',
                '**/cli/**',
                '**/service/**',
                '**/supervisor/**',
                'kysely',
                'pg',
                'mysql2',
                'better-sqlite3',
                'fastify',
                'prom-client',
              ],
              message: 'The shm client imports nothing from the daemon, servers or databases.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/api/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '**/store/**',
                '**/dns/**',
                '**/agent/**',
                '**/reporter/**',
                '**/web/**',
                '**/cli/**',
                'kysely',
                'pg',
                'mysql2',
                'better-sqlite3',
                'fastify',
              ],
              message: 'The SDK imports nothing from server or database code.',
            },
          ],
        },
      ],
    },
  },
  {
    // 'lars/bus' (the bus client) and what it is built from: no daemon, server or database code.
    files: ['src/bus/index.ts', 'src/bus/client/**/*.ts', 'src/bus/wire/**/*.ts', 'src/bus/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '**/server/**',
                '**/store/**',
                '**/dns/**',
                '**/agent/**',
                '**/reporter/**',
                '**/web/**',
                '**/cli/**',
                '**/supervisor/**',
                '**/service/**',
                '**/net/tcp-*',
                '**/net/udp-*',
                '**/net/index.js',
                'kysely',
                'pg',
                'mysql2',
                'better-sqlite3',
                'fastify',
                'prom-client',
              ],
              message:
                "The bus client ('lars/bus') imports nothing from the daemon, servers or database code.",
            },
          ],
        },
      ],
    },
  },
);
