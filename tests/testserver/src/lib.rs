//! The project's own local HTTP server, for integration tests (fault
//! injection), the README demo, benchmarks and crash campaigns.
//!
//! Its own crate, `hfd-testserver` in `tests/testserver/`: a dev-dependency
//! of `hfd` (the integration tests, examples and benches use it) and a
//! dependency of the power-cut harness, never part of the product: the
//! product's own dependencies do not ask for hyper's server side.
//!
//! Why our own: the downloader's hard cases are servers that misbehave in
//! specific, repeatable ways (engine-design §4). A real server cannot be
//! told to reset the third connection after 1 MiB, and a network emulator
//! cannot lie in `Content-Range`. This server can, one knob per pitfall,
//! while behaving like nginx everywhere else.
//!
//! * [`Content`]: deterministic file bytes, any size, no storage.
//! * [`TestServer`]: HTTP/1.1 and HTTP/2, optionally TLS, on its own thread.
//!   Routes ([`FileSpec`], [`Redirect`], [`Handler`]) can be added while it
//!   runs.
//! * [`Faults`]: per-file misbehaviour (ignore ranges, throttle, resets,
//!   stalls, 429/503, wrong `Content-Range`, corruption, a file that changes
//!   midway, ...). [`ServerOptions::max_connections`] caps connections.
//! * [`Stats`] and [`TestServer::requests`]: what clients actually did.
//! * [`proxy`]: SOCKS5 and HTTP proxies that record what clients sent.
//! * [`hub::MockHub`]: a mock Hugging Face Hub (API, resolve redirects, a
//!   second server as the CDN) for `hfd`'s tests, demo and benchmarks;
//!   [`xet::MockCas`], the Xet storage behind it (CAS and transfer servers);
//!   either over HTTPS with [`tls::throwaway_tls`].
//!
//! ```no_run
//! use hfd_testserver::{FileSpec, TestServer};
//!
//! let server = TestServer::start();
//! let spec = FileSpec::generated(7, 64 << 20).throttle(8 << 20);
//! let sha = spec.sha256_hex();
//! server.add_file("/model.bin", spec);
//! println!("{} {sha}", server.url("/model.bin"));
//! ```
//!
//! Everything listens on loopback unless told otherwise; nothing here talks
//! to the network.

mod body;
mod conn;
mod content;
mod faults;
pub mod hub;
pub mod proxy;
mod semantics;
mod server;
mod spec;
mod sync;
pub mod tls;
pub mod xet;

#[cfg(test)]
mod test_client;
#[cfg(test)]
mod tests;

pub use content::Content;
pub use faults::{Fail, Faults, SlowConns, Stall};
pub use semantics::EmptyRange;
pub use server::{ConnLimit, FileView, OverLimit, PathStats, ServerOptions, Stats, TestServer};
pub use spec::{Body, DEFAULT_LAST_MODIFIED, FileSpec, Handler, Redirect, Reply, RequestInfo};
