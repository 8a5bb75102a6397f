//! The project's own local HTTP server, for integration tests (fault
//! injection), the README demo, benchmarks and crash campaigns.
//!
//! Why our own: the downloader's hard cases are servers that misbehave in
//! specific, repeatable ways (engine-design §4). A real server cannot be
//! told to reset the third connection after 1 MiB, and a network emulator
//! cannot lie in `Content-Range`. This server can, one knob per pitfall,
//! while behaving like nginx everywhere else.
//!
//! * [`Content`]: deterministic file bytes, any size, no storage.
//! * The server itself follows.
//!
//! Everything listens on loopback unless told otherwise; nothing here talks
//! to the network.

mod content;

pub use content::Content;
