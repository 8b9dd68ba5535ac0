import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    // Build output, coverage, tap's cache and the runs' results: generated, not written by hand.
    ignores: ['dist/**', 'dist-bench/**', 'dist-chaos/**', 'coverage/**', '.tap/**', 'bench/results/**', 'chaos/results/**']
  }),
  {
    rules: {
      // `void promise` as a statement marks a deliberate fire-and-forget (its errors are handled where it is made).
      'no-void': ['error', { allowAsStatement: true }],
      // A `let` read by a teardown registered before it is assigned stays `let`: a `const` would be in its TDZ if a start failed first.
      'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }]
    }
  },
  {
    // These tests assert the config's `${VAR}` environment substitution, so their strings hold `${...}` on purpose.
    files: ['test/unit/config.test.ts', 'test/unit/config-verify-only.test.ts', 'test/unit/deploy-files.test.ts', 'test/e2e/cli.test.ts', 'test/e2e/check-secrets.test.ts'],
    rules: { 'no-template-curly-in-string': 'off' }
  }
]
