//! The client layer, between connections ([`crate::net`]) and one download
//! ([`crate::engine`]): requests as the engine, the Hub API and the bench
//! send them, and what their answers mean.
//!
//! - [`request`]: one GET with redirects followed by hand, and reading
//!   answers (bodies, error snippets) with bounds;
//! - [`credentials`]: which headers go to which origin;
//! - [`source`]: a URL a file can be fetched from: resolution, expiry,
//!   health, pipelining;
//! - [`classify`]: what a status or a network error means; the one table
//!   of what is retried;
//! - [`retry`]: the one retry driver: full-jitter backoff, `Retry-After` as
//!   a minimum, cancellation racing every wait and every request;
//! - [`document`]: a small whole answer (the Hub's JSON) with retries;
//! - [`url`]: URLs that show themselves without secrets;
//! - [`error`]: what a request fails with for good.

pub mod classify;
pub mod credentials;
pub mod document;
pub mod error;
pub mod request;
pub mod retry;
pub mod source;
pub mod url;

pub use classify::{Failure, FailureKind};
pub use credentials::Credentials;
pub use error::Error;
pub use request::{ByteRange, Fetched, Hop, Request, fetch};
pub use retry::{Backoff, RetryPolicy, Stop};
pub use source::{Source, SourceId};
pub use url::SafeUrl;
