//! `--include` / `--exclude`, exactly as hfd.sh means them.
//!
//! hfd.sh turns each pattern into a regular expression with two textual
//! substitutions only (`.` → `\.`, `*` → `.*`), joins the patterns of one
//! option with `|`, and matches *unanchored* and case-sensitively against
//! the repo path (`sub/dir/file.bin`). So `--include config` keeps every
//! path containing "config", `*` crosses `/`, and `?`, `[…]`, `^`, `$`
//! keep their regex meaning. Scripts in the wild depend on all of that, so
//! it is reproduced rather than "fixed" (docs/hfd.md has the table).
//! Rust's regex syntax agrees with POSIX ERE on everything people write in
//! these patterns.

use regex_lite::Regex;

/// A compiled include/exclude selection.
#[derive(Clone, Debug)]
pub struct Filter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

/// hfd.sh's glob-to-regex translation of one pattern.
pub fn pattern_to_regex(p: &str) -> String {
    p.replace('.', "\\.").replace('*', ".*")
}

fn compile(option: &str, patterns: &[String]) -> Result<Option<Regex>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for p in patterns {
        // Checked one by one, so the message names the culprit.
        Regex::new(&pattern_to_regex(p))
            .map_err(|e| format!("invalid {option} pattern {p:?}: {e}"))?;
    }
    let joined: Vec<String> = patterns.iter().map(|p| pattern_to_regex(p)).collect();
    Regex::new(&joined.join("|"))
        .map(Some)
        .map_err(|e| format!("invalid {option} patterns: {e}"))
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, String> {
        Ok(Filter {
            include: compile("--include", include)?,
            exclude: compile("--exclude", exclude)?,
        })
    }

    /// Everything.
    pub fn all() -> Filter {
        Filter {
            include: None,
            exclude: None,
        }
    }

    /// True when `path` is selected: it matches an include pattern (or
    /// there are none) and no exclude pattern.
    pub fn selects(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(path))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(path))
    }

    /// True when any pattern was given.
    pub fn is_active(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    /// The mock repo of the protocol notes (§1.5), checked against hfd.sh.
    const REPO: &[&str] = &[
        "README.md",
        "a.b.txt",
        "axbxtxt",
        "config.json",
        "model.safetensors",
        "sub/dir/weights.bin",
        "tokenizer.json",
    ];

    fn select(include: &[&str], exclude: &[&str]) -> Vec<&'static str> {
        let f = Filter::new(&v(include), &v(exclude)).unwrap();
        REPO.iter().copied().filter(|p| f.selects(p)).collect()
    }

    #[test]
    fn reproduces_the_hfd_sh_table() {
        assert_eq!(select(&["*.json"], &[]), ["config.json", "tokenizer.json"]);
        assert_eq!(select(&["config"], &[]), ["config.json"]);
        assert_eq!(select(&["a.b.txt"], &[]), ["a.b.txt"]);
        assert_eq!(
            select(&[], &["*.safetensors", "*.md"]),
            [
                "a.b.txt",
                "axbxtxt",
                "config.json",
                "sub/dir/weights.bin",
                "tokenizer.json"
            ]
        );
        assert_eq!(select(&["sub/*"], &[]), ["sub/dir/weights.bin"]);
        assert!(select(&["*.bin"], &["sub"]).is_empty());
        assert_eq!(select(&["axbx?txt"], &[]), ["axbxtxt"]);
        assert!(select(&["README.MD"], &[]).is_empty());
        assert_eq!(select(&["^c"], &[]), ["config.json"]);
        assert_eq!(select(&["json$"], &[]), ["config.json", "tokenizer.json"]);
        assert_eq!(
            select(&["[ab]x*"], &[]),
            ["axbxtxt"],
            "a raw character class leaks through"
        );
        assert_eq!(select(&[], &[]).len(), REPO.len());
    }

    /// The rows of rust-stack.md §1.6: where hfd differs from real globs.
    #[test]
    fn unanchored_substring_semantics() {
        let m = |p: &str, path: &str| Filter::new(&v(&[p]), &[]).unwrap().selects(path);
        assert!(m("*.md", "docs/a.md"));
        assert!(m("*.md", "a.mdx"));
        assert!(m("*.md", "x.md.bak"));
        assert!(m("vae/*", "unet/vae/x.bin"));
        assert!(m("vae/*", "vae/sub/x.bin"));
        assert!(!m("model?.bin", "model1.bin"));
        assert!(m("model?.bin", "mode.bin"));
        assert!(m("Q4_K_M", "dir/m-Q4_K_M.gguf"));
        assert!(m("[ab].txt", "a.txt"));
        assert!(!m("*.safetensors", "model.SAFETENSORS"));
    }

    #[test]
    fn include_then_exclude_and_bad_patterns() {
        let f = Filter::new(&v(&["*.json", "*.md"]), &v(&["tokenizer"])).unwrap();
        assert!(f.selects("config.json"));
        assert!(f.selects("README.md"));
        assert!(!f.selects("tokenizer.json"));
        assert!(!f.selects("model.bin"));
        assert!(f.is_active());
        assert!(!Filter::all().is_active());
        let e = Filter::new(&v(&["ok", "(unclosed"]), &[]).unwrap_err();
        assert!(e.contains("(unclosed"), "{e}");
    }
}
