/**
 * helia's entry point, for where its `Helia` class cannot be loaded alone
 * (see `createLightHelia` in ./helia.ts): bundles and browsers, where the
 * unused rest of 'helia' is tree-shaken away. Node never loads this module
 * unless helia moved its files.
 */
export { createHeliaLight } from 'helia'
