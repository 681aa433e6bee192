// TypeScript declarations of the ESM entry (lib/index.mjs): the same API as index.d.ts.
export * from './index.js';
import weft from './index.js';
export default weft;
