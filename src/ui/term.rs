//! The one place that decides how output may look: whether stdout and
//! stderr are terminals we may redraw on, and whether to colour them.
//!
//! Colour only on a terminal, never with `NO_COLOR` set (no-color.org), and
//! nothing drawn in place for `TERM=dumb`.

use std::io::IsTerminal;

/// What the two output streams allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    /// stderr is a terminal we may redraw a progress line on.
    pub live: bool,
    pub color_out: bool,
    pub color_err: bool,
}

impl Term {
    /// Reads the streams and the environment (`TERM`, `NO_COLOR`).
    pub fn detect() -> Term {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let err_tty = std::io::stderr().is_terminal() && !dumb;
        let out_tty = std::io::stdout().is_terminal() && !dumb;
        Term {
            live: err_tty,
            color_out: out_tty && !no_color,
            color_err: err_tty && !no_color,
        }
    }

    /// Plain text, nothing redrawn (the demo, and output for machines).
    pub fn plain() -> Term {
        Term {
            live: false,
            color_out: false,
            color_err: false,
        }
    }
}

/// How a line is emphasised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "\x1b[1m",
            Style::Dim => "\x1b[2m",
            Style::Green => "\x1b[0;32m",
            Style::Red => "\x1b[0;31m",
            Style::Yellow => "\x1b[1;33m",
        }
    }

    /// `text` in this style when `on`.
    pub fn paint(self, on: bool, text: &str) -> String {
        if on && self != Style::Plain {
            format!("{}{text}\x1b[0m", self.code())
        } else {
            text.to_string()
        }
    }
}
