//! `completions SHELL` and `man`: the subcommands both binaries share, and
//! the files a package ships (shell completions, man pages), all generated
//! from the same clap definitions that parse the command line, so they
//! cannot drift from it.
//!
//! Both binaries take a positional argument (hfd's `REPO_ID`, hfget's
//! URLs), and clap tries a subcommand name before a positional one: `hfd
//! man` prints the man page. A repo whose whole id is `man` or
//! `completions` stays reachable after `--` (`hfd -- man`), which ends
//! options and subcommands alike. No URL is ever one of these words.

use std::io::{self, Write};

use clap::{Command, Subcommand, ValueEnum};

/// What the binaries print instead of downloading.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Generate {
    /// Print the completion script for SHELL on stdout, to be saved where
    /// the shell looks for completions (examples in --help).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) on stdout; `man -l -` reads it.
    Man,
}

/// The shells we generate completions for (and test): the three a Linux
/// user has. clap_complete has more; they are left out until someone
/// checks them.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }

    /// Where the script goes under a prefix's `share/`, by each shell's
    /// convention (bash-completion, zsh's site-functions, fish's vendor
    /// folder).
    fn shared_path(self, bin: &str) -> String {
        match self {
            Shell::Bash => format!("bash-completion/completions/{bin}"),
            Shell::Zsh => format!("zsh/site-functions/_{bin}"),
            Shell::Fish => format!("fish/vendor_completions.d/{bin}.fish"),
        }
    }
}

/// The completion script of `cmd` for `shell`.
pub fn completions(mut cmd: Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell.generator(), &mut cmd, name, &mut out);
    out
}

/// The man page of `cmd` (section 1, roff).
pub fn man_page(cmd: Command) -> Vec<u8> {
    let program = cmd.get_name().to_string();
    render_man(cmd, &program)
}

/// The man pages of `cmd` as (file name, roff): its own page, then one per
/// subcommand (`hfd-completions.1`, `hfd-man.1`), which its SUBCOMMANDS
/// section refers to.
pub fn man_pages(mut cmd: Command) -> Vec<(String, Vec<u8>)> {
    // Building names the subcommands as the parent's page refers to them
    // (display name `hfd-man`, synopsis `hfd man`).
    cmd.build();
    let program = cmd.get_name().to_string();
    let mut pages = vec![(format!("{program}.1"), render_man(cmd.clone(), &program))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        pages.push((format!("{name}.1"), render_man(sub.clone(), &program)));
    }
    pages
}

fn render_man(cmd: Command, program: &str) -> Vec<u8> {
    // The page's footer: the program and its version, without the TLS
    // details of --version (the VERSION section has them).
    let source = format!("{program} {}", env!("CARGO_PKG_VERSION"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(source)
        .render(&mut out)
        .expect("writing to memory does not fail");
    out
}

/// Prints what `what` asks for on stdout. A closed stdout (`hfd man |
/// head`) is not an error worth a message.
pub fn print(what: &Generate, cmd: Command) -> io::Result<()> {
    let bytes = match what {
        Generate::Completions { shell } => completions(cmd, *shell),
        Generate::Man => man_page(cmd),
    };
    let mut stdout = io::stdout().lock();
    match stdout.write_all(&bytes).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Every file a package installs under its prefix's `share/` for this
/// command: the three completion scripts and the man pages, as (path
/// relative to `share/`, content). The wheel ships them (pyproject.toml's
/// `data`); a test keeps the copies in the repository current.
pub fn shared_files(cmd: &Command) -> Vec<(String, Vec<u8>)> {
    let bin = cmd.get_name().to_string();
    let mut files: Vec<(String, Vec<u8>)> = Shell::ALL
        .iter()
        .map(|&s| (s.shared_path(&bin), completions(cmd.clone(), s)))
        .collect();
    files.extend(
        man_pages(cmd.clone())
            .into_iter()
            .map(|(name, page)| (format!("man/man1/{name}"), page)),
    );
    files
}
