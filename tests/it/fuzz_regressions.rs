//! Replays the fuzz corpus seeds and every input that once made a fuzz
//! target fail (tests/fuzz/regressions/<target>/), with the very checks the
//! targets run, so a fixed crash stays fixed without running the fuzzer.

use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

/// Replays every saved input of `target` and returns how many there were.
/// Every target has a seed folder; a missing one fails instead of
/// replaying nothing. Its regressions folder only exists once an input
/// has made it fail (git keeps no empty folder).
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let seeds = root.join("seeds").join(target);
    assert!(seeds.is_dir(), "{} is missing", seeds.display());
    let mut n = 0;
    for dir in [root.join("regressions").join(target), seeds] {
        if !dir.exists() {
            continue;
        }
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{} fails {target}", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn saved_fuzz_inputs_pass() {
    assert!(replay("control_file", checks::control_file) >= 3);
    assert!(replay("proxy_config", checks::proxy_config) >= 4);
    assert!(replay("http_headers", checks::http_headers) >= 9);
    assert!(replay("input_file", checks::input_file) >= 5);
    assert!(replay("hub_json", checks::hub_json) >= 6);
    assert!(replay("http_response", checks::http_response) >= 8);
    assert!(replay("tls_records", checks::tls_records) >= 8);
    assert!(replay("xet", checks::xet) >= 4);
}

#[test]
fn control_file_seeds_are_valid_slots() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/control_file");
    let simple = std::fs::read(seeds.join("simple")).unwrap();
    let (generation, state) = hfd::storage::control_file::decode_slot(&simple).unwrap();
    assert_eq!(
        (generation, state.total, state.done.covered()),
        (1, 1000, 200)
    );
}
