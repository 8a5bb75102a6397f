//! `--version`, `completions SHELL` and `man`: what the binaries print, the
//! copies the wheel ships (docs/wheel/data/share) kept equal to what the
//! code generates, and the subcommand words never hiding a repo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use hfd::cli::generate::{self, Shell};
use hfd_testserver::hub::{HubFile, MockHub, RepoSpec};

use crate::support::*;

/// Where the wheel's shared files live in the repository.
fn share_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/wheel/data/share")
}

fn commands() -> [clap::Command; 2] {
    [
        hfd::cli::hfd::Args::command(),
        hfd::cli::hfget::Args::command(),
    ]
}

/// The binaries by name, without `--retry-wait=0` (a subcommand must be
/// the first argument).
const BINS: [(&str, &str); 2] = [
    ("hfd", env!("CARGO_BIN_EXE_hfd")),
    ("hfget", env!("CARGO_BIN_EXE_hfget")),
];

/// The checked-in completions and man pages are what the clap definitions
/// generate now. `HFD_REGENERATE=1 cargo test --test it shipped_` rewrites
/// them (and removes files the code no longer makes).
#[test]
fn shipped_completions_and_man_pages_are_current() {
    let regenerate = std::env::var("HFD_REGENERATE").is_ok_and(|v| v == "1");
    let root = share_dir();
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for cmd in commands() {
        for (rel, content) in generate::shared_files(&cmd) {
            let path = root.join(&rel);
            if regenerate {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &content).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&content[..]) {
                stale.push(rel.clone());
            }
            expected.insert(rel);
        }
    }
    let unknown: Vec<String> = all_files(&root)
        .into_iter()
        .filter(|f| !expected.contains(f))
        .collect();
    if regenerate {
        for f in &unknown {
            std::fs::remove_file(root.join(f)).unwrap();
        }
        return;
    }
    assert!(
        stale.is_empty() && unknown.is_empty(),
        "docs/wheel/data/share differs from what the code generates \
         (stale or missing: {stale:?}; not generated: {unknown:?}); \
         run `HFD_REGENERATE=1 cargo test --test it shipped_` and commit the result"
    );
    // Three shells and at least one page per binary: nothing was left out.
    assert!(expected.len() >= 8, "{expected:?}");
}

/// The rustls version Cargo.lock builds with, as "MAJOR.MINOR".
fn locked_rustls() -> String {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let at = lock
        .find("name = \"rustls\"\n")
        .expect("rustls in Cargo.lock");
    let version = lock[at..]
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("version = \""))
        .expect("a version line after the name");
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

#[test]
fn version_names_the_version_and_the_tls_stack() {
    let dir = tempdir();
    let want_tls = format!("(TLS: rustls {} with ring;", locked_rustls());
    for (name, path) in BINS {
        for flag in ["--version", "-V"] {
            let (code, out, err) = run(bare_bin(path, dir.path()).arg(flag));
            assert_eq!(code, 0, "{name} {flag}: {err}");
            let want = format!("{name} {} {want_tls}", env!("CARGO_PKG_VERSION"));
            assert!(
                out.starts_with(&want),
                "{name} {flag}: {out:?}, want {want:?}"
            );
        }
    }
}

/// Bash completes options, subcommands and shells with the script the
/// binary prints (the function is called the way bash's `complete -F`
/// calls it).
#[test]
fn bash_completion_completes() {
    let dir = tempdir();
    for (name, path) in BINS {
        let (code, script, err) = run(bare_bin(path, dir.path()).args(["completions", "bash"]));
        assert_eq!(code, 0, "{err}");
        let file = dir.path().join(format!("{name}.bash"));
        std::fs::write(&file, &script).unwrap();
        let complete = |words: &[&str]| -> Vec<String> {
            let line = words.join(" ");
            let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
            let shell = format!(
                "source {file}; COMP_WORDS=({array}); COMP_CWORD={cword}; \
                 COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
                 _{name} {name} '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file = file.display(),
                array = quoted.join(" "),
                cword = words.len() - 1,
                cur = words[words.len() - 1],
                prev = words[words.len() - 2],
            );
            let (code, out, err) = run(Command::new("bash").args(["--norc", "-c", &shell]));
            assert_eq!(code, 0, "{shell}: {err}");
            out.lines().map(str::to_string).collect()
        };
        let long = complete(&[name, "--max-tr"]);
        assert_eq!(long, ["--max-tries"], "{name}");
        let subs = complete(&[name, "comp"]);
        assert!(
            subs.contains(&"completions".to_string()),
            "{name}: {subs:?}"
        );
        let shells = complete(&[name, "completions", ""]);
        let words: Vec<&String> = shells.iter().filter(|w| !w.starts_with('-')).collect();
        assert_eq!(words, ["bash", "zsh", "fish"], "{name}: {shells:?}");
    }
}

/// zsh and fish parse their scripts, where installed (CI installs both).
#[test]
fn zsh_and_fish_scripts_parse() {
    let dir = tempdir();
    for (shell, check) in [
        (Shell::Zsh, &["-n"][..]),
        (Shell::Fish, &["--no-execute"][..]),
    ] {
        let program = format!("{shell:?}").to_lowercase();
        if Command::new(&program).arg("--version").output().is_err() {
            println!("SKIPPED: {program} is not installed");
            continue;
        }
        for cmd in commands() {
            let file = dir.path().join(format!("{}.{program}", cmd.get_name()));
            std::fs::write(&file, generate::completions(cmd, shell)).unwrap();
            let (code, out, err) = run(Command::new(&program).args(check).arg(&file));
            assert_eq!(code, 0, "{program} rejects {}: {out}{err}", file.display());
        }
    }
}

/// `man` prints the shipped page; groff reads every page without a warning.
#[test]
fn man_pages_render() {
    let dir = tempdir();
    for (name, path) in BINS {
        let (code, page, err) = run(bare_bin(path, dir.path()).arg("man"));
        assert_eq!(code, 0, "{err}");
        let shipped = share_dir().join(format!("man/man1/{name}.1"));
        assert_eq!(
            page,
            std::fs::read_to_string(&shipped).unwrap(),
            "{name} man"
        );
        assert!(
            page.contains(".TH") && page.contains("completions"),
            "{page}"
        );
    }
    if Command::new("groff").arg("--version").output().is_err() {
        println!("SKIPPED: groff is not installed");
        return;
    }
    for cmd in commands() {
        for (file, page) in generate::man_pages(cmd) {
            let path = dir.path().join(&file);
            std::fs::write(&path, &page).unwrap();
            let (code, out, err) = run(Command::new("groff")
                .args(["-ww", "-man", "-Tutf8", "-P-cbou"])
                .arg(&path));
            assert_eq!(code, 0, "{file}: {err}");
            assert!(err.is_empty(), "groff warns about {file}: {err}");
            assert!(out.contains("SYNOPSIS"), "{file}: {out}");
        }
    }
}

/// `hfd man` never reaches the Hub; `hfd -- man` (or any option before the
/// word) downloads the repo called `man`.
#[test]
fn a_repo_named_like_a_subcommand_is_reachable() {
    let hub = MockHub::start();
    let readme = "# the repo called man\n";
    for id in ["man", "completions"] {
        hub.add_repo(RepoSpec::model(id).file(HubFile::git("README.md", readme)));
    }
    let dir = tempdir();
    // No --retry-wait=0 first: a subcommand is the first argument or none.
    let hfd = |args: &[&str]| {
        let mut c = bare_bin(env!("CARGO_BIN_EXE_hfd"), dir.path());
        c.env("HF_ENDPOINT", hub.endpoint()).args(args);
        run(&mut c)
    };
    let (code, page, err) = hfd(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH hfd 1"), "{page}");
    let (code, _, err) = hfd(&["completions", "fish"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        hub.hub().stats().requests,
        0,
        "a subcommand reached the Hub"
    );
    assert!(all_files(dir.path()).is_empty());

    let (code, out, err) = hfd(&["--", "man"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = hfd(&["--local-dir", "c", "completions"]);
    assert_eq!(code, 0, "{out}{err}");
    for f in ["man/README.md", "c/README.md"] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(f)).unwrap(),
            readme,
            "{f}"
        );
    }
}
