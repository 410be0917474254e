// ESLint flat config: typescript-eslint strict + type-checked rules for all project code,
// plus a boundary rule that keeps I/O modules out of the pure folders (DESIGN §1).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IO_MODULES = [
  'node:fs', 'node:fs/promises', 'node:net', 'node:tls', 'node:http', 'node:https', 'node:dgram',
  'node:child_process', 'node:dns', 'node:worker_threads', 'node:cluster', 'node:os',
  'ioredis', 'pino', 'prom-client', 'ws', '@kubernetes/client-node', 'pg',
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'crds/generated/*.js', '.tools/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // node:test's describe/it return promises that the runner tracks itself.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'], package: 'node:test' }] }],
    },
  },
  {
    // Pure core: policy language and codecs never touch sockets, files, Redis or clocks directly.
    files: ['policy/**/*.ts', 'sidecar/protocols/postgres/codec/**/*.ts', 'audit/chain/**/*.ts', 'sidecar/masking/**/*.ts', 'operator/webhook/**/*.ts', 'operator/interception/**/*.ts', 'operator/reconcile/**/*.ts', 'operator/announce/policy-announcement.ts',
      'operator/admission/admission-review.ts', 'operator/certs/certificate-builder.ts', 'operator/certs/ca-bundle-patch.ts',
      'operator/approvals/**/*.ts'],
    // apply-rules.ts is the interception folder's one I/O adapter (it runs iptables-restore);
    // the reconcile executor (API writes) and reconciler (timers, logs) wrap the pure planner.
    ignores: ['**/*.test.ts', 'operator/interception/apply-rules.ts', 'operator/reconcile/executor.ts', 'operator/reconcile/reconciler.ts',
      // Adapters of the approvals core: Redis, the API server, signing keys and the webhook transport.
      'operator/approvals/approvals-controller.ts', 'operator/approvals/review-signing-key.ts', 'operator/approvals/review-webhook.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: IO_MODULES.map((name) => ({ name, message: 'pure module: inject I/O instead (DESIGN §1)' })) }],
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
