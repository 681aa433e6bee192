// libc, for the bytes that cross between JavaScript and weft: memcpy to copy what weft
// lends a callback, calloc/strdup/free for a task's userData, dladdr to name a
// function's library.
'use strict';

const { koffi } = require('./ffi.js');

// libc: memcpy to copy bytes weft lends a callback into a Buffer (koffi.decode with a
// length and koffi.view both leak memory on every call: 18 and 220 bytes in koffi
// 3.3.4), calloc/strdup/free for the bytes a task's work reads (they must outlive a
// timeout or an abort, and free is a native free_fn weft may call on a pool thread), and dladdr to
// refuse a work pointer that is not a function of a loaded library. Addresses are
// uintptr_t: Numbers, exact below 2^53, which covers user space.
const libc = koffi.load(process.platform === 'darwin' ? 'libSystem.B.dylib' : 'libc.so.6');
const c_copyFrom = libc.func('void *memcpy(void *dst, uintptr_t src, size_t n)');
const c_copyTo = libc.func('void *memcpy(uintptr_t dst, const void *src, size_t n)');
const c_calloc = libc.func('uintptr_t calloc(size_t n, size_t size)');
const c_strdup = libc.func('uintptr_t strdup(const char *s)');
const c_free = libc.func('void free(uintptr_t ptr)');
const C_FREE = libc.symbol('free');
const Dl_info = koffi.struct('weft_js_Dl_info', {
  dli_fname: 'const char *', dli_fbase: 'void *', dli_sname: 'const char *', dli_saddr: 'void *',
});
const c_dladdr = libc.func('int dladdr(void *addr, _Out_ weft_js_Dl_info *info)');

// A copy of the `len` bytes at address `ptr` (a Number), which weft lends a callback.
function copyBytes(ptr, len) {
  if (len === 0 || ptr === 0) return Buffer.alloc(0);
  const buf = Buffer.allocUnsafe(len);
  c_copyFrom(buf, ptr, len);
  return buf;
}

module.exports = { c_copyTo, c_calloc, c_strdup, c_free, C_FREE, c_dladdr, copyBytes };
