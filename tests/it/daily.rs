//! Issue 21's everyday pieces, through the real `hfd` binary: a bare `hfd`,
//! hfd.sh's words for a gated repo, `--dry-run`, `--verify-origin`.

use std::path::Path;
use std::process::Command;

use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};

use crate::support::*;

fn files() -> Vec<HubFile> {
    vec![
        HubFile::git("README.md", "# readme\n"),
        HubFile::git("config.json", "{\"hidden\": 64}\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(1, 1 << 20)),
        HubFile::lfs("sub/weights.bin", FileSpec::generated(2, 100_000)),
    ]
}

fn repo(id: &str) -> RepoSpec {
    files()
        .into_iter()
        .fold(RepoSpec::model(id), |r, f| r.file(f))
}

fn hfd(dir: &Path, hub: &MockHub) -> Command {
    let mut c = hfd_bin(dir);
    c.env("HF_ENDPOINT", hub.endpoint());
    c
}

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

#[test]
fn a_gated_repo_without_a_token_requires_authentication_in_hfd_sh_words() {
    let hub = MockHub::start();
    hub.set_token("hf_good");
    hub.add_repo(repo("org/gated").gated("auto"));
    let dir = tempdir();
    let (code, out, err) = run(hfd(dir.path(), &hub).arg("org/gated"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("requires authentication"), "{err}");
    // The advice stays.
    assert!(
        err.contains("--hf_token") && err.contains("HF_TOKEN") && err.contains("terms"),
        "{err}"
    );
    assert!(hub.resolve_requests().is_empty());
    assert!(hub.cdn().requests().is_empty());
}
