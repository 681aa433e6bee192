//! Link flags of the shared library.
//!
//! `-z nodelete`: once loaded, libweft.so is never unmapped, even by dlclose. A host
//! that unloads it (Node at exit, a Python interpreter tearing down ctypes handles)
//! could otherwise unmap code a weft thread is still running: pool threads outlive
//! any single call, and a host cannot always join them first.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
