import { defineConfig } from 'vite'

/**
 * Builds the browser demo (`npm run build:demo`, `npm start` later). Inside
 * this repository `new-piece-please` resolves to `src/` (the `npp-source`
 * condition), and the Node platform module is swapped for the browser one,
 * as the package.json `browser` field does for users' bundlers.
 */
export default defineConfig({
  root: 'examples/browser-demo',
  resolve: {
    conditions: ['npp-source', 'browser', 'module', 'import', 'default'],
    alias: [{ find: /^(.*)\/platform\/node\.ts$/, replacement: '$1/platform/browser.ts' }]
  },
  build: {
    target: 'es2022',
    outDir: '../../dist-demo',
    emptyOutDir: true,
    reportCompressedSize: true
  }
})
