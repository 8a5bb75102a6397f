//! aria2c's input-file format (`-i FILE`), read as a stream.
//!
//! ```text
//! # a comment
//! https://a.example/f.bin<TAB>https://mirror.example/f.bin
//!   dir=models
//!   out=f.bin
//!   header=Authorization: Bearer ...
//! ```
//! A line that starts with a non-blank character begins an entry (URLs of the
//! same file separated by tabs); indented `key=value` lines are that entry's
//! options. Entries are yielded one at a time, so a list of a million lines
//! does not sit in memory (aria2c keeps it all, about 12 KB an entry).

use std::io::BufRead;

/// One download of an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Line number of the URL line, for messages.
    pub line: usize,
    pub urls: Vec<String>,
    pub options: Vec<(String, String)>,
}

/// The option keys an entry may carry (aria2c's names).
pub const KEYS: &[&str] = &[
    "dir",
    "out",
    "header",
    "checksum",
    "split",
    "max-connection-per-server",
    "min-split-size",
    "max-tries",
    "retry-wait",
    "timeout",
    "allow-overwrite",
    "continue",
    "max-download-limit",
];

/// Iterates over the entries of an input file.
pub struct Entries<R> {
    lines: std::io::Lines<R>,
    line_no: usize,
    pending: Option<Entry>,
    done: bool,
}

impl<R: BufRead> Entries<R> {
    pub fn new(reader: R) -> Self {
        Entries {
            lines: reader.lines(),
            line_no: 0,
            pending: None,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for Entries<R> {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let line = match self.lines.next() {
                None => {
                    self.done = true;
                    return self.pending.take().map(Ok);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(format!("cannot read the input file: {e}")));
                }
                Some(Ok(l)) => l,
            };
            self.line_no += 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                let Some(entry) = self.pending.as_mut() else {
                    return Some(Err(format!(
                        "input file line {}: an option line before any URL line",
                        self.line_no
                    )));
                };
                let Some((k, v)) = trimmed.split_once('=') else {
                    return Some(Err(format!(
                        "input file line {}: expected key=value, got {trimmed:?}",
                        self.line_no
                    )));
                };
                let k = k.trim().to_string();
                if !KEYS.contains(&k.as_str()) {
                    return Some(Err(format!(
                        "input file line {}: unknown option {k:?} (known: {})",
                        self.line_no,
                        KEYS.join(", ")
                    )));
                }
                entry.options.push((k, v.trim().to_string()));
                continue;
            }
            let urls: Vec<String> = trimmed
                .split('\t')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let new = Entry {
                line: self.line_no,
                urls,
                options: Vec::new(),
            };
            if let Some(prev) = self.pending.replace(new) {
                return Some(Ok(prev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_with_options_and_mirrors() {
        let text =
            "# list\nhttp://a/x\thttp://b/x\n  dir=d\n  out=o.bin\n\n  header=A: b\nhttp://c/y\n";
        let e: Vec<Entry> = Entries::new(text.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].urls, vec!["http://a/x", "http://b/x"]);
        assert_eq!(
            e[0].options,
            vec![
                ("dir".into(), "d".into()),
                ("out".into(), "o.bin".into()),
                ("header".into(), "A: b".into())
            ]
        );
        assert_eq!(e[1].line, 7);
    }

    #[test]
    fn rejects_bad_lines() {
        let bad: Vec<_> = Entries::new("  dir=x\n".as_bytes()).collect();
        assert!(bad[0].as_ref().unwrap_err().contains("line 1"));
        let bad: Vec<_> = Entries::new("http://a\n  nope=1\n".as_bytes()).collect();
        assert!(bad[0].as_ref().unwrap_err().contains("unknown option"));
    }
}
