//! The panic boundary every exported function runs inside (rustls-ffi's shape): an error
//! becomes the function's failure value and a `weft_last_error` message naming the
//! function; a panic becomes `WEFT_ERR_PANIC`.

use super::error::{set_last_error, weft_result};
use crate::error::{Code, Result};
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What an exported function returns when it fails with `code`.
pub(crate) trait Failure {
    fn failure(code: Code) -> Self;
}

impl Failure for c_int {
    fn failure(code: Code) -> c_int {
        weft_result::from(code) as c_int
    }
}

impl Failure for u64 {
    fn failure(_: Code) -> u64 {
        0
    }
}

impl Failure for i64 {
    fn failure(_: Code) -> i64 {
        -1
    }
}

impl Failure for bool {
    fn failure(_: Code) -> bool {
        false
    }
}

impl Failure for () {
    fn failure(_: Code) {}
}

impl<T> Failure for *mut T {
    fn failure(_: Code) -> *mut T {
        std::ptr::null_mut()
    }
}

/// The panic boundary every exported function runs inside: an error becomes the
/// function's failure value and a `weft_last_error` message naming the function; a panic
/// becomes `WEFT_ERR_PANIC`.
pub(crate) fn guard<T: Failure>(function: &str, body: impl FnOnce() -> Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            set_last_error(function, error.code, &error.message);
            T::failure(error.code)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(function, Code::Panic, &format!("internal panic (a weft bug): {what}"));
            T::failure(Code::Panic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::{weft_last_error, weft_last_error_code};
    use super::*;
    use crate::error::Error;
    use std::ffi::{c_char, CStr};

    #[test]
    fn errors_and_panics_become_failure_values() {
        let n: c_int = guard("weft_x", || Err(Error::invalid("fd -1 is bad")));
        assert_eq!(n, -2);
        let mut buf = [0 as c_char; 8];
        let len = weft_last_error(buf.as_mut_ptr(), buf.len());
        assert_eq!(len, "weft_x: fd -1 is bad".len());
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(), "weft_x:");
        assert_eq!(weft_last_error_code(), weft_result::WEFT_ERR_INVALID as c_int);
        let p: c_int = guard("weft_y", || panic!("boom"));
        assert_eq!(p, weft_result::WEFT_ERR_PANIC as c_int);
    }
}
