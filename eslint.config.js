// Lint config: neostandard ("standard" style, flat config) with its TypeScript
// support. No type-aware rules (no parserOptions.project), so lint stays fast;
// `npm run typecheck` (tsc) covers types and import resolution.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'dist-demo/**', 'node_modules/**'],
  }),
  {
    name: 'new-piece-please/ts-overrides',
    files: ['**/*.ts'],
    rules: {
      // `void promise` marks a deliberate fire-and-forget; allowed as a statement as ts-standard / eslint-config-ipfs do
      'no-void': ['error', { allowAsStatement: true }],
    },
  },
]
