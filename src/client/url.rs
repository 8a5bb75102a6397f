//! URLs that show themselves without secrets.
//!
//! A URL is kept whole wherever it is used (requests, comparisons, which
//! source failed) and redacted only where it is shown: user info and the
//! query string go (signed storage URLs carry their signature in the query),
//! so no message, log line or `{:?}` can leak them.

use std::fmt;
use std::sync::Arc;

use url::Url;

use crate::net::redact_url;

/// A URL whose `Display` and `Debug` leave out user info and the query.
/// Shared, so errors that carry one stay small and cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeUrl(Arc<Url>);

impl SafeUrl {
    pub fn new(url: Url) -> SafeUrl {
        SafeUrl(Arc::new(url))
    }

    /// The whole URL, secrets included: for requests, never for messages.
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl From<Url> for SafeUrl {
    fn from(u: Url) -> SafeUrl {
        SafeUrl::new(u)
    }
}

impl From<&Url> for SafeUrl {
    fn from(u: &Url) -> SafeUrl {
        SafeUrl::new(u.clone())
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let u =
            SafeUrl::new(Url::parse("https://al:pw@h.example/f?X-Amz-Signature=s3cret").unwrap());
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(
                !shown.contains("pw") && !shown.contains("s3cret"),
                "{shown}"
            );
            assert!(shown.contains("h.example/f"), "{shown}");
        }
        assert!(u.url().as_str().contains("s3cret"));
    }
}
