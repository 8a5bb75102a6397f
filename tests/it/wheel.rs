//! The wheel as a user gets it: `.ci/wheel.sh` builds it (and names it in
//! `HFD_WHEEL`), pip installs it into a fresh virtual environment without
//! the network, and the installed `hfd` and `hfget` run from a folder
//! outside the source tree, with nothing of the build's environment,
//! against the project's own servers on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};

use crate::support::*;

/// The wheel to test, or `None` after saying why the caller skips. A name
/// that is set but missing is a broken CI, not a skip.
fn wheel() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("HFD_WHEEL") else {
        println!(
            "SKIPPED: HFD_WHEEL is not set (bash .ci/wheel.sh builds the wheel and prints it)"
        );
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "HFD_WHEEL={} is not a file", path.display());
    Some(path)
}

/// A fresh virtual environment in `root` with the wheel installed by pip
/// from the file alone; returns its `bin` folder.
fn install(python: &Path, wheel: &Path, root: &Path) -> PathBuf {
    let venv = root.join("venv");
    let (code, out, err) = run(Command::new(python).args(["-m", "venv"]).arg(&venv));
    assert_eq!(code, 0, "python -m venv: {out}{err}");
    let bin = venv.join("bin");
    let (code, out, err) = run(Command::new(bin.join("python"))
        .args(["-m", "pip", "install", "--no-index", "--no-deps"])
        .args(["--disable-pip-version-check", "--no-input"])
        .arg(wheel)
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_FIND_LINKS"));
    assert_eq!(code, 0, "pip install {}: {out}{err}", wheel.display());
    bin
}

/// An installed binary run in `cwd` with an environment of its own: PATH
/// the venv's bin and the system's, a HOME in the temporary folder,
/// nothing from cargo or the test run.
fn installed(bin: &Path, name: &str, cwd: &Path) -> Command {
    let mut c = Command::new(bin.join(name));
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", cwd)
        .env("NO_COLOR", "1")
        .env("TERM", "dumb");
    c
}

#[test]
fn installed_wheel_runs_outside_the_source_tree() {
    let (Some(python), Some(wheel)) = (python(), wheel()) else {
        return;
    };
    let root = tempdir();
    let bin = install(&python, &wheel, root.path());
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        !work.starts_with(source),
        "the work folder is in the source tree"
    );

    for name in ["hfd", "hfget"] {
        let (code, out, err) = run(installed(&bin, name, &work).arg("--help"));
        assert_eq!(code, 0, "{name} --help: {err}");
        assert!(
            out.contains("Examples:") && out.contains("completions"),
            "{out}"
        );
        let (code, out, err) = run(installed(&bin, name, &work).arg("--version"));
        assert_eq!(code, 0, "{name} --version: {err}");
        let want = format!("{name} {} (TLS: rustls", env!("CARGO_PKG_VERSION"));
        assert!(out.starts_with(&want), "{name} --version: {out:?}");
        // The man page and completions came with the wheel, as generated.
        for rel in [
            format!("man/man1/{name}.1"),
            format!("bash-completion/completions/{name}"),
            format!("zsh/site-functions/_{name}"),
            format!("fish/vendor_completions.d/{name}.fish"),
        ] {
            let got = std::fs::read(bin.join("../share").join(&rel))
                .unwrap_or_else(|e| panic!("share/{rel} not installed: {e}"));
            let shipped = std::fs::read(source.join("docs/wheel/data/share").join(&rel)).unwrap();
            assert!(got == shipped, "share/{rel} differs from the repository's");
        }
    }
    man_finds_the_page(&bin, &work);

    // A file, byte-exact, over several connections.
    let server = TestServer::start();
    let file = FileSpec::generated(61, 3 << 20);
    let want = file.sha256_hex();
    server.add_file("/weights.bin", file);
    let (code, out, err) = run(installed(&bin, "hfget", &work)
        .args(["-x", "4", "--retry-wait=0"])
        .arg(server.url("/weights.bin")));
    assert_eq!(code, 0, "hfget: {out}{err}");
    assert_eq!(sha256_file(&work.join("weights.bin")), want);
    assert!(server.stats().requests >= 2, "{:?}", server.stats());

    // A repo from the mock Hub, byte-exact.
    let hub = MockHub::start();
    let files = vec![
        HubFile::git("config.json", "{\"wheel\": true}\n"),
        HubFile::git("sub/notes.txt", "notes\n"),
        HubFile::lfs("model.safetensors", FileSpec::generated(62, 2 << 20)),
    ];
    hub.add_repo(
        files
            .iter()
            .cloned()
            .fold(RepoSpec::model("org/tiny"), |r, f| r.file(f)),
    );
    let (code, out, err) = run(installed(&bin, "hfd", &work)
        .args(["org/tiny", "-x", "4", "--retry-wait=0"])
        .env("HF_ENDPOINT", hub.endpoint()));
    assert_eq!(code, 0, "hfd: {out}{err}");
    for f in &files {
        let path = work.join("tiny").join(&f.path);
        assert_eq!(sha256_file(&path), f.spec.sha256_hex(), "{}", f.path);
    }
}

/// man-db looks for pages beside each PATH entry (`bin/../share/man`), so
/// `man hfd` works in the activated environment.
fn man_finds_the_page(bin: &Path, work: &Path) {
    if Command::new("man").arg("--version").output().is_err() {
        println!("SKIPPED: man is not installed; not checking `man -w hfd`");
        return;
    }
    let mut m = Command::new("man");
    m.current_dir(work)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .args(["-w", "hfd"]);
    let (code, out, err) = run(&mut m);
    assert_eq!(code, 0, "man -w hfd: {err}");
    let page = Path::new(out.trim());
    assert!(
        page.starts_with(bin.parent().unwrap()),
        "man -w hfd found {out:?}, not the environment's page"
    );
}
