//! The body of a response, from hyper or from our own plain HTTP/1.1 client
//! ([`super::plain`]), behind one [`http_body::Body`] so that callers read
//! both alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use super::plain::PlainBody;

pub enum Body {
    Hyper(Incoming),
    Plain(PlainBody),
}

/// Why reading a body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Hyper(#[from] hyper::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Body::Plain(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Hyper(b) => b.is_end_stream(),
            Body::Plain(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Hyper(b) => b.size_hint(),
            Body::Plain(b) => b.size_hint(),
        }
    }
}
