//! Fuzz target; the property is `checks::tls_records`.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tls_records(data));
