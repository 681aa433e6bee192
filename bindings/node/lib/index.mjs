// ESM entry of weft for Node.js: the same module as lib/index.js (CommonJS).
//
//     import weft, { Loop } from 'weft';
import weft from './index.js';

export const {
  Loop,
  Handle,
  WeftError,
  AbortError,
  TaskError,
  READABLE,
  WRITABLE,
  HANGUP,
  ERROR,
  version,
  abiVersion,
  libraryPath,
  native,
  ffi,
  diagnostics,
  poolStats,
  utilizationBetween,
  TaskTiming,
} = weft;

export default weft;
