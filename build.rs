//! Link flags of the shared library.
//!
//! `-z nodelete`: once loaded, libweft.so is never unmapped, even by dlclose. A host
//! that unloads it (Node at exit, a Python interpreter tearing down ctypes handles)
//! could otherwise unmap code a weft thread is still running: pool threads outlive
//! any single call, and a host cannot always join them first.
//!
//! The SONAME, `libweft.so.N` (on macOS the install name `@rpath/libweft.N.dylib`): a
//! program linked against this library records that name, so it loads only a library of
//! the same ABI. N moves with `WEFT_ABI_VERSION` (src/ffi/mod.rs), read from there so the
//! number lives in one place: N = WEFT_ABI_VERSION - 1, because ABI 1 is the first one
//! and ships as `libweft.so.0`. `make build` links `target/release/libweft.so.N` to
//! `libweft.so`, so programs linked in the tree find it; `make install` installs
//! `libweft.so.N.MINOR.PATCH` and both links.
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ffi/mod.rs");
    // `weft_kqueue`: the portable backend's poller is a kqueue (timers and child exits are
    // kqueue filters there); not when the tests ask polling for poll(2) everywhere.
    println!("cargo::rustc-check-cfg=cfg(weft_kqueue)");
    println!("cargo::rustc-check-cfg=cfg(polling_test_poll_backend)");
    // `weft_polling_epoll`: polling's backend is epoll (Linux, Android), which the portable
    // backend waits on directly when it can (src/sys/portable/direct.rs).
    println!("cargo::rustc-check-cfg=cfg(weft_polling_epoll)");
    // `weft_polling_poll`: polling's backend is poll(2) (the tests' build on Linux, and the
    // systems polling has no other backend for), where a busy loop looks before it blocks.
    println!("cargo::rustc-check-cfg=cfg(weft_polling_poll)");
    // `loom`: the model-checking build (`make loom`; see src/sync.rs).
    println!("cargo::rustc-check-cfg=cfg(loom)");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let poll_only = env::var_os("CARGO_CFG_POLLING_TEST_POLL_BACKEND").is_some();
    if matches!(os.as_str(), "macos" | "ios" | "tvos" | "watchos" | "freebsd" | "netbsd" | "openbsd" | "dragonfly")
        && !poll_only
    {
        println!("cargo:rustc-cfg=weft_kqueue");
    }
    if matches!(os.as_str(), "linux" | "android") && !poll_only {
        println!("cargo:rustc-cfg=weft_polling_epoll");
    }
    let other_poller = matches!(
        os.as_str(),
        "linux"
            | "android"
            | "redox"
            | "illumos"
            | "solaris"
            | "windows"
            | "macos"
            | "ios"
            | "tvos"
            | "watchos"
            | "visionos"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "dragonfly"
    );
    if poll_only || !other_poller {
        println!("cargo:rustc-cfg=weft_polling_poll");
    }
    let major = soname_major();
    match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("macos" | "ios") => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libweft.{major}.dylib");
        }
        _ => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libweft.so.{major}");
        }
    }
}

/// `WEFT_ABI_VERSION - 1`, from `pub const WEFT_ABI_VERSION: u32 = N;` in src/ffi/mod.rs.
fn soname_major() -> u32 {
    let source = fs::read_to_string("src/ffi/mod.rs").expect("build.rs: read src/ffi/mod.rs");
    let abi: u32 = source
        .lines()
        .find_map(|line| line.trim().strip_prefix("pub const WEFT_ABI_VERSION: u32 = "))
        .and_then(|rest| rest.trim_end_matches(';').trim().parse().ok())
        .expect("build.rs: no `pub const WEFT_ABI_VERSION: u32 = N;` in src/ffi/mod.rs");
    assert!(abi >= 1, "build.rs: WEFT_ABI_VERSION must be at least 1");
    abi - 1
}
