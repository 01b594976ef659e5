//! `uniffi-bindgen`, pinned to the uniffi version till-ffi is built with, so
//! generated bindings always match the library (see `bindings/generate`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
