//! What a request can fail with for good: worded for the user, naming the
//! URL (redacted) the user gave.

use crate::net::NetError;

use super::url::SafeUrl;

/// A request that cannot succeed by trying again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: SafeUrl, status: u16 },
    #[error("{url}: access denied (HTTP {status}){hint}")]
    Auth {
        url: SafeUrl,
        status: u16,
        hint: String,
    },
    #[error("{url}: {detail}")]
    BadResponse { url: SafeUrl, detail: String },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: SafeUrl, max: usize },
    #[error("{0}")]
    Net(NetError),
}
