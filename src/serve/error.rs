//! The server's errors: what goes wrong starting it ([`Error`]), and the
//! answers the Hub gives for requests that cannot be served ([`ApiError`]),
//! with its status codes, `X-Error-Code` and `X-Error-Message` headers and
//! bodies, so huggingface_hub raises the same exceptions it raises against
//! the Hub (`RepositoryNotFoundError`, `RevisionNotFoundError`,
//! `RemoteEntryNotFoundError`).

use std::net::SocketAddr;

use super::http::Response;
use crate::storage::StorageError;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the cache folder cannot be read: {0}")]
    Cache(#[from] StorageError),
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}

/// A request the server answers with an error.
#[derive(Debug, PartialEq, Eq)]
pub enum ApiError {
    /// The cache has no such repo (the Hub's 404 to a signed-in user).
    RepoNotFound,
    RevisionNotFound(String),
    /// A file or folder the snapshot does not have.
    EntryNotFound,
    /// A path that names no route.
    NoRoute,
    /// A request the server will not read: `..`, bad encoding, bad cursor.
    BadRequest(&'static str),
    MethodNotAllowed(&'static str),
    /// A range starting past the end of a file of this length.
    RangeNotSatisfiable(u64),
}

fn json_error(status: u16, code: Option<&str>, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(status, "application/json; charset=utf-8", body.into_bytes())
        .header("X-Error-Message", message);
    if let Some(c) = code {
        r = r.header("X-Error-Code", c);
    }
    r
}

impl ApiError {
    pub fn response(&self) -> Response {
        match self {
            ApiError::RepoNotFound => json_error(404, Some("RepoNotFound"), "Repository not found"),
            ApiError::RevisionNotFound(rev) => json_error(
                404,
                Some("RevisionNotFound"),
                &format!("Invalid rev id: {rev}"),
            ),
            ApiError::EntryNotFound => Response::new(
                404,
                "text/plain; charset=utf-8",
                b"Entry not found".to_vec(),
            )
            .header("X-Error-Code", "EntryNotFound")
            .header("X-Error-Message", "Entry not found"),
            ApiError::NoRoute => Response::new(
                404,
                "text/plain; charset=utf-8",
                b"Sorry, we can't find the page you are looking for.".to_vec(),
            ),
            ApiError::BadRequest(why) => json_error(400, None, why),
            ApiError::MethodNotAllowed(allow) => {
                json_error(405, None, "Method not allowed").header("Allow", *allow)
            }
            ApiError::RangeNotSatisfiable(len) => {
                json_error(416, None, "Requested range not satisfiable")
                    .header("Content-Range", format!("bytes */{len}"))
            }
        }
    }
}
