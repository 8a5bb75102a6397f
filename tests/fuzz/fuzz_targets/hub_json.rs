//! Fuzz target; the property is `checks::hub_json`.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hub_json(data));
