//! Errors of the safe core: a code (the C ABI's `weft_result`) and a message that names
//! the argument and the value. The C layer adds the function name.

use std::fmt;

/// The error classes of the C ABI; `as i32` gives the `weft_result` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Null = -1,
    Invalid = -2,
    NotFound = -3,
    Closed = -4,
    Busy = -5,
    Cancelled = -6,
    Timeout = -7,
    Crashed = -8,
    Panic = -9,
    Io = -10,
    Unsupported = -11,
    Forked = -12,
}

/// A failed call: what went wrong, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::Invalid, message)
    }

    pub fn not_found(id: u64) -> Error {
        Error::new(Code::NotFound, format!("id {id:#x} does not name a live registration of this loop"))
    }

    pub fn io(what: &str, err: std::io::Error) -> Error {
        Error::new(Code::Io, format!("{what}: {err}"))
    }

    pub fn forked() -> Error {
        Error::new(Code::Forked, "called in a forked child; weft's threads and locks belong to the parent")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
