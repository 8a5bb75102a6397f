//! Replays the fuzz corpus seeds and every input that once made a fuzz
//! target fail (tests/fuzz/regressions/<target>/), with the very checks the
//! targets run, so a fixed crash stays fixed without running the fuzzer.

use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut n = 0;
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
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
    assert!(replay("proxy_config", checks::proxy_config) >= 1);
    replay("http_headers", checks::http_headers);
    replay("input_file", checks::input_file);
    assert!(replay("hub_json", checks::hub_json) >= 6);
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
