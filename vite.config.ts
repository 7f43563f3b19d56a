import { defineConfig } from 'vite'

/**
 * Builds the browser demo (`npm run build:demo`, `npm start` later). Inside
 * this repository `new-piece-please` resolves to `src/` (the `npp-source`
 * condition); the package.json `browser` field swaps the Node platform module
 * for the browser one, as it does for users' bundlers (which need no config
 * at all: test/process/bundlers.test.ts builds the published layout with
 * esbuild, webpack and Vite).
 */
export default defineConfig({
  root: 'examples/browser-demo',
  resolve: {
    conditions: ['npp-source', 'browser', 'module', 'import', 'default']
  },
  build: {
    target: 'es2022',
    outDir: '../../dist-demo',
    emptyOutDir: true,
    reportCompressedSize: true
  }
})
