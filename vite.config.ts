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
    reportCompressedSize: true,
    // The page's main chunk is ~1,080 kB minified (plus helia's light node,
    // ~71 kB, in a chunk of its own; Vite 8.3.8): the libp2p, Helia and
    // OrbitDB stack it needs before it can show anything, so splitting it
    // further would only add round trips. Vite's 500 kB default would warn
    // at every build; this still warns if it grows by a third.
    chunkSizeWarningLimit: 1500
  }
})
