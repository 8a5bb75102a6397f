//! The Hugging Face front end behind the `hfd` binary: a drop-in for the
//! hf-mirror.com `hfd.sh` script that downloads in-process with the engine.
//!
//! - [`endpoint`]: `HF_ENDPOINT`, repo ids, URL building and encoding;
//! - [`filter`]: hfd.sh's `--include`/`--exclude` semantics;
//! - [`api`]: repo info, tree size, the paginated tree, error answers;
//! - [`state`]: the local dir's `.hfd/` folder, path safety, fingerprints;
//! - [`run`]: one run from repo info to the final verdict;
//! - [`identity`]: whether every endpoint serves the file the listing names;
//! - [`bench`]: `--bench`, measuring each endpoint on the repo's largest file;
//! - [`display`]: the messages and the one-line progress.
//!
//! docs/hfd.md describes the behaviour from the user's side.

pub mod api;
pub mod bench;
pub mod display;
pub mod endpoint;
pub mod filter;
pub mod identity;
pub mod run;
pub mod state;

pub use endpoint::{DEFAULT_ENDPOINT, Endpoint, RepoId, RepoType};
pub use run::{Options, Status, run};
