//! The Hugging Face front end behind the `hfd` binary: a drop-in for the
//! hf-mirror.com `hfd.sh` script that downloads in-process with the engine.
//!
//! - [`endpoint`]: `HF_ENDPOINT`, repo ids, URL building and encoding;
//! - [`filter`]: hfd.sh's `--include`/`--exclude` semantics;
//! - [`api`]: repo info, tree size, the paginated tree, error answers;
//! - [`state`]: the local dir's `.hfd/` folder, path safety, fingerprints;
//! - [`place`]: where files go: a local dir (with huggingface_hub's
//!   records, [`hf_meta`]) or the Hugging Face cache ([`cache`]);
//! - [`run`]: one run from repo info to the verdict, in steps:
//!   [`listing`] (the file list), [`check`] (what is already here),
//!   [`queue`] (`-j` files at a time), [`file`] (one file, its endpoints
//!   and its checks);
//! - [`events`]: what a run tells whoever shows it ([`crate::ui`] draws it);
//! - [`messages`]: errors in words a user can act on;
//! - [`origin`]: `--verify-origin`, the commit and hashes from the origin;
//! - [`identity`]: whether every endpoint serves the file the listing names;
//! - [`bench`]: `--bench`, measuring each endpoint on the repo's largest file;
//! - `xet`: whether a file is read natively from Xet storage.
//!
//! docs/hfd.md describes the behaviour from the user's side.

pub mod api;
pub mod bench;
pub mod cache;
mod check;
pub mod endpoint;
pub mod events;
mod file;
pub mod filter;
pub mod hf_meta;
pub mod identity;
mod listing;
pub mod messages;
mod origin;
pub mod place;
mod queue;
pub mod run;
pub mod state;
mod xet;

pub use endpoint::{DEFAULT_ENDPOINT, Endpoint, RepoId, RepoType};
pub use place::Dest;
pub use run::{Options, Status, run};
