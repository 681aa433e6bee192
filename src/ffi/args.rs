//! Checks of the arguments C passes: pointers, NUL-terminated strings, byte buffers and
//! versioned options structs. A bad one is an error that names the argument.

use crate::error::{Code, Error, Result};
use std::ffi::{c_char, c_void, CStr};

/// `ptr` as a reference, or `WEFT_ERR_NULL` naming the argument.
pub(crate) fn non_null<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller passes a pointer it got from weft (or NULL, refused here).
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::new(Code::Null, format!("{name} is NULL")))
}

/// A NUL-terminated UTF-8 argument.
pub(crate) fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    non_null(ptr, name)?;
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
}

/// `len` bytes at `ptr` (which may be NULL when `len` is 0).
pub(super) fn bytes_arg<'a>(ptr: *const c_void, len: usize, name: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::new(Code::Null, format!("{name} is NULL with len {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("len {len} is larger than any object")));
    }
    // SAFETY: the caller gives `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// Writes `ours` into the caller's struct at `out`, whose first field is the `size` the
/// caller set (`sizeof` as its program sees it): the bytes both know, so an older
/// program gets the fields it knows and a newer one keeps zeros past ours; `size` is
/// then set to how many bytes weft filled.
pub(super) fn out_struct<T>(out: *mut T, ours: T, name: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::new(Code::Null, format!("{name} is NULL")));
    }
    // SAFETY: every such struct starts with its size; the caller owns `out`.
    let size = unsafe { out.cast::<usize>().read_unaligned() };
    let ours_size = std::mem::size_of::<T>();
    if size < 2 * std::mem::size_of::<usize>() || size > 1 << 16 {
        return Err(Error::invalid(format!(
            "{name}->size {size} is not sizeof the struct (this library's is {ours_size})"
        )));
    }
    let n = size.min(ours_size);
    // SAFETY: the caller's struct holds `size` >= n bytes; ours holds n; the size field
    // is then written within them.
    unsafe {
        std::ptr::copy_nonoverlapping((&ours as *const T).cast::<u8>(), out.cast::<u8>(), n);
        out.cast::<usize>().write_unaligned(n);
    }
    Ok(())
}

/// Reads a caller's options struct of `size` bytes into ours (missing fields zero).
pub(super) fn read_options<T: Copy>(ptr: *const T, name: &str, minimum: usize) -> Result<Option<T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: every options struct starts with its size; the caller owns `ptr`.
    let size = unsafe { *ptr.cast::<usize>() };
    if size < minimum || size > 1 << 16 {
        return Err(Error::invalid(format!(
            "{name}.size {size} is not sizeof({name}) (this library's is {})",
            std::mem::size_of::<T>()
        )));
    }
    if size >= std::mem::size_of::<T>() {
        // SAFETY: the caller's struct holds at least ours (the common case: no copy
        // of a variable length).
        return Ok(Some(unsafe { ptr.read_unaligned() }));
    }
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    let n = size;
    // SAFETY: copies the `n` bytes both sides have; the rest of `out` stays zero, which
    // is a valid value for every field of these structs (integers, pointers, Options).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), n);
        Ok(Some(out.assume_init()))
    }
}
