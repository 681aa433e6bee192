// Errors: WeftError (what weft reported), AbortError (an AbortSignal ended the call),
// TaskError (a task's work returned a nonzero status), and reading weft_last_error.
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');

const { WEFT_ERR_CLOSED, WEFT_ERR_INVALID } = ffi;

const CODE_NAMES = new Map(Object.entries(ffi.CONSTANTS)
  .filter(([name]) => name.startsWith('WEFT_ERR_'))
  .map(([name, value]) => [value, name]));

// An error weft reported: `code` is the weft_result's name ('WEFT_ERR_NOT_FOUND'),
// `errno` its value (-3), the message weft_last_error's text.
class WeftError extends Error {
  constructor(errno, message) {
    super(message || lib.weft_strerror(errno));
    this.name = 'WeftError';
    this.errno = errno;
    this.code = CODE_NAMES.get(errno) || `WEFT_ERR_${errno}`;
  }
}

// What the caller's AbortSignal ended: as node:timers/promises does.
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options = undefined) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

// A task whose work returned a status other than 0: `status` is it, `result` the
// bytes the work wrote.
class TaskError extends Error {
  constructor(status, result) {
    super(`the task's work returned status ${status}`);
    this.name = 'TaskError';
    this.code = 'WEFT_TASK_STATUS';
    this.status = status;
    this.result = result;
  }
}

// The error of the call that just failed on this thread (read right after the failure).
function lastError(code) {
  const errno = code === undefined ? lib.weft_last_error_code() : code;
  const len = Number(lib.weft_last_error(null, 0));
  let message = '';
  if (len > 0) {
    const buf = Buffer.alloc(len + 1);
    lib.weft_last_error(buf, buf.length);
    message = buf.toString('utf8', 0, len);
  }
  return new WeftError(errno || WEFT_ERR_INVALID, message);
}

function closedError(what) {
  return new WeftError(WEFT_ERR_CLOSED, `${what}: the loop is closed`);
}

module.exports = { WeftError, AbortError, TaskError, lastError, closedError };
