//! Issue 21's everyday pieces, through the real `hfd` binary: a bare `hfd`,
//! hfd.sh's words for a gated repo, `--dry-run`, `--verify-origin`.

use crate::support::*;

#[test]
fn bare_hfd_prints_the_usage_with_its_options_and_exits_1() {
    let dir = tempdir();
    let (code, out, err) = run(&mut bare_bin(env!("CARGO_BIN_EXE_hfd"), dir.path()));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "the usage goes to stderr: {out}");
    for want in [
        "Usage:",
        "REPO_ID",
        "--include",
        "--hf_token",
        "--revision",
        "-x",
        "Examples:",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert!(err.lines().count() > 20, "not the whole usage:\n{err}");
    assert!(all_files(dir.path()).is_empty());
}
