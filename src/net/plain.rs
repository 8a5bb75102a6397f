//! HTTP/1.1 over a bare TCP socket, for plain-http connections that go
//! straight to the server.
//!
//! hyper owns the socket of its connections, so every body byte it hands
//! over has been copied from the kernel into user space, and storage copies
//! it back into the page cache. Profiles put those two copies at most of
//! hfget's CPU (docs/performance.md). Here the socket stays ours: headers are
//! read into a buffer and parsed with `httparse` (hyper's own parser), and a
//! `Content-Length` body can be moved with `splice(2)` from the socket into a
//! pipe and from the pipe into the file, which leaves one copy in the kernel.
//! Bodies that cannot be spliced (chunked, close-delimited, error pages) are
//! read as ordinary frames through [`http_body::Body`], so the rest of the
//! engine does not care which client answered.
//!
//! The same client speaks HTTP/1.1 over TLS, on records we open ourselves
//! ([`super::tls_link`]); such bodies are read as frames, never spliced.
//!
//! Only what a downloader sends is supported: `GET` without a request body.
//! One request may be sent ahead while a body is still arriving (HTTP/1.1
//! pipelining, [`PlainBody::send_ahead`]): on a distant server the next
//! range then follows the current one without a round trip of silence, and
//! a lost request packet is retransmitted while data still flows.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::{Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::NetError;
use super::tls_link::TlsLink;
use crate::sync::lock;

/// A response head larger than this is refused (hyper's default is similar).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// What the HTTP bytes travel on.
enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsLink>),
}

impl Transport {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Tcp(t) => t.write_all(data).await,
            Transport::Tls(t) => t.write_all(data).await,
        }
    }

    /// Appends what arrives next to `buf`; `Ok(0)` at the end of the stream.
    /// TLS hands over its plaintext in place when `buf` is empty, which it
    /// is whenever a body is streamed.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        read_size: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(t) => {
                buf.reserve(read_size);
                tokio_util::io::poll_read_buf(Pin::new(t), cx, buf)
            }
            Transport::Tls(t) => match ready!(t.poll_plain(cx, read_size))? {
                None => Poll::Ready(Ok(0)),
                Some(data) => {
                    let n = data.len();
                    if buf.is_empty() {
                        *buf = data;
                    } else {
                        buf.extend_from_slice(&data);
                    }
                    Poll::Ready(Ok(n))
                }
            },
        }
    }

    /// Whether an end of stream can be trusted as the end of a body that
    /// runs to the close: over TLS only after close_notify.
    fn ended_cleanly(&self) -> bool {
        match self {
            Transport::Tcp(_) => true,
            Transport::Tls(t) => t.closed_cleanly(),
        }
    }
}

/// The connection and what was read from it past the last response.
struct Wire {
    link: Transport,
    buf: BytesMut,
    /// A request was sent whose answer has not been read yet.
    sent_ahead: bool,
}

/// One HTTP/1.1 connection, on a plain socket or over TLS. While a body is
/// being read the connection belongs to the body; a body read to its end hands it back, and a body
/// dropped early takes it down with it, which closes the connection.
pub struct PlainConn {
    home: Arc<Mutex<Option<Wire>>>,
    read_size: usize,
}

impl PlainConn {
    pub fn new(tcp: TcpStream, read_size: usize) -> PlainConn {
        PlainConn::on(Transport::Tcp(tcp), read_size)
    }

    /// HTTP/1.1 over a TLS connection whose handshake is done.
    pub(crate) fn over_tls(link: TlsLink, read_size: usize) -> PlainConn {
        PlainConn::on(Transport::Tls(Box::new(link)), read_size)
    }

    fn on(link: Transport, read_size: usize) -> PlainConn {
        PlainConn {
            home: Arc::new(Mutex::new(Some(Wire {
                link,
                buf: BytesMut::new(),
                sent_ahead: false,
            }))),
            read_size: read_size.max(8192),
        }
    }

    /// False while a body holds the socket, and for good once one was
    /// dropped unfinished or the server said it would close.
    pub fn is_closed(&self) -> bool {
        lock(&self.home).is_none()
    }

    /// True when a request was sent ahead ([`PlainBody::send_ahead`]) and
    /// its answer is next on the wire: the connection can carry nothing
    /// else until [`receive`](Self::receive) has read it.
    pub fn has_answer_pending(&self) -> bool {
        lock(&self.home).as_ref().is_some_and(|w| w.sent_ahead)
    }

    /// Sends a request head (`head` is the whole head, ending in an empty
    /// line) and reads the response head.
    pub async fn send(
        &mut self,
        head: Vec<u8>,
        host: &str,
    ) -> Result<Response<PlainBody>, NetError> {
        if self.has_answer_pending() {
            return Err(http_error(
                host,
                "an answer to an earlier request is still due".into(),
            ));
        }
        let mut wire = self.take_wire(host)?;
        wire.link
            .write_all(&head)
            .await
            .map_err(|e| http_error(host, format!("sending the request failed: {e}")))?;
        self.answer(wire, host).await
    }

    /// Reads the answer to the request sent ahead.
    pub async fn receive(&mut self, host: &str) -> Result<Response<PlainBody>, NetError> {
        let mut wire = self.take_wire(host)?;
        if !std::mem::take(&mut wire.sent_ahead) {
            return Err(http_error(host, "no request was sent ahead".into()));
        }
        self.answer(wire, host).await
    }

    fn take_wire(&self, host: &str) -> Result<Wire, NetError> {
        lock(&self.home)
            .take()
            .ok_or_else(|| http_error(host, "the connection is closed".into()))
    }

    async fn answer(&self, mut wire: Wire, host: &str) -> Result<Response<PlainBody>, NetError> {
        loop {
            let parsed = read_head(&mut wire, self.read_size)
                .await
                .map_err(|e| http_error(host, e.to_string()))?;
            let Head {
                status,
                headers,
                keep_alive,
            } = parsed;
            // 1xx answers are informational: the real one follows.
            if status.is_informational() {
                continue;
            }
            let framing = framing(status, &headers).map_err(|d| http_error(host, d))?;
            let reusable = keep_alive && !matches!(framing, Framing::UntilClose);
            let body = PlainBody {
                wire: Some(wire),
                home: self.home.clone(),
                state: match framing {
                    Framing::Length(0) => State::Done,
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::ChunkSize,
                    Framing::UntilClose => State::UntilClose,
                },
                reusable,
                read_size: self.read_size,
            };
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response.body_mut().finish_if_done();
            return Ok(response);
        }
    }
}

fn http_error(host: &str, detail: String) -> NetError {
    NetError::Http {
        host: host.to_string(),
        detail,
    }
}

struct Head {
    status: StatusCode,
    headers: HeaderMap,
    keep_alive: bool,
}

/// Reads and parses one response head, leaving what follows it in `wire.buf`.
async fn read_head(wire: &mut Wire, read_size: usize) -> io::Result<Head> {
    let bad = |detail: String| io::Error::new(io::ErrorKind::InvalidData, detail);
    loop {
        if !wire.buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut slots);
            match r.parse(&wire.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = r.code.unwrap_or(0);
                    let status = StatusCode::from_u16(code)
                        .map_err(|_| bad(format!("invalid status code {code}")))?;
                    let mut headers = HeaderMap::with_capacity(r.headers.len());
                    for h in r.headers.iter() {
                        let name = HeaderName::from_bytes(h.name.as_bytes())
                            .map_err(|_| bad(format!("invalid header name {:?}", h.name)))?;
                        let value = HeaderValue::from_bytes(h.value)
                            .map_err(|_| bad(format!("invalid value of header {}", h.name)))?;
                        headers.append(name, value);
                    }
                    let close = has_token(&headers, &CONNECTION, "close");
                    let keep_alive = match r.version {
                        Some(1) => !close,
                        // HTTP/1.0 closes unless it says otherwise.
                        _ => !close && has_token(&headers, &CONNECTION, "keep-alive"),
                    };
                    wire.buf.advance(len);
                    return Ok(Head {
                        status,
                        headers,
                        keep_alive,
                    });
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(bad(format!("more than {MAX_HEADERS} response headers")));
                }
                Err(e) => return Err(bad(format!("invalid response head: {e}"))),
            }
            if wire.buf.len() >= MAX_HEAD {
                return Err(bad(format!("a response head larger than {MAX_HEAD} bytes")));
            }
        }
        let n = std::future::poll_fn(|cx| {
            wire.link
                .poll_read_into(cx, &mut wire.buf, read_size.min(MAX_HEAD))
        })
        .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if wire.buf.is_empty() {
                    "the server closed the connection without answering"
                } else {
                    "the server closed the connection inside the response head"
                },
            ));
        }
    }
}

fn has_token(h: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How the body of a response is delimited (RFC 9112 section 6.3).
fn framing(status: StatusCode, h: &HeaderMap) -> Result<Framing, String> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if h.contains_key(TRANSFER_ENCODING) {
        // The last coding decides; anything but chunked runs to the close.
        let last = h
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .unwrap_or("");
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for v in h.get_all(CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("x").split(',') {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| format!("invalid Content-Length {:?}", v))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

#[derive(Debug)]
enum State {
    /// This many body bytes are still to come.
    Length(u64),
    /// A chunk-size line is next.
    ChunkSize,
    /// Inside a chunk with this many bytes left, then its CRLF.
    Chunk(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines until an empty one.
    Trailers,
    UntilClose,
    Done,
}

/// The body of a [`PlainConn`] response.
pub struct PlainBody {
    wire: Option<Wire>,
    home: Arc<Mutex<Option<Wire>>>,
    state: State,
    reusable: bool,
    read_size: usize,
}

impl std::fmt::Debug for PlainBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainBody")
            .field("state", &self.state)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl PlainBody {
    /// Body bytes not yet delivered, when the framing says (`Content-Length`).
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The `Content-Length` body bytes already read into memory (with the
    /// head, or by a read); to be delivered before anything is spliced.
    pub fn take_buffered(&mut self) -> Option<Bytes> {
        let State::Length(left) = self.state else {
            return None;
        };
        let wire = self.wire.as_mut()?;
        let n = (wire.buf.len() as u64).min(left) as usize;
        if n == 0 {
            return None;
        }
        let data = wire.buf.split_to(n).freeze();
        self.consumed(n as u64);
        Some(data)
    }

    /// Sends the next request on this connection before this body has
    /// ended; its answer is read with [`PlainConn::receive`] once this body
    /// was read to its end. Refused when the server said it would close, or
    /// when a request is already waiting.
    pub async fn send_ahead(&mut self, head: &[u8]) -> io::Result<()> {
        if !self.reusable || matches!(self.state, State::Done) {
            return Err(io::Error::other("the connection ends with this answer"));
        }
        let wire = self
            .wire
            .as_mut()
            .ok_or_else(|| io::Error::other("the body has no connection"))?;
        if wire.sent_ahead {
            return Err(io::Error::other("a request is already waiting"));
        }
        wire.sent_ahead = true;
        let sent = wire.link.write_all(head).await;
        if sent.is_err() {
            // Half a request may be on the wire: never reuse the connection.
            self.reusable = false;
        }
        sent
    }

    fn consumed(&mut self, n: u64) {
        if let State::Length(left) = &mut self.state {
            *left -= n;
            if *left == 0 {
                self.state = State::Done;
            }
        }
        self.finish_if_done();
    }

    /// A body read to its end gives the socket back for the next request.
    fn finish_if_done(&mut self) {
        if matches!(self.state, State::Done)
            && let Some(wire) = self.wire.take()
            && self.reusable
        {
            *lock(&self.home) = Some(wire);
        }
    }

    /// Moves up to `max` body bytes from the socket into `pipe`, without
    /// copying them through user space. Needs a `Content-Length` body whose
    /// buffered bytes were taken first ([`take_buffered`](Self::take_buffered)).
    /// Returns how many bytes moved; a closed connection is an error.
    /// Cancel-safe: bytes moved are always returned, never left in flight.
    #[cfg(target_os = "linux")]
    pub async fn splice_into(
        &mut self,
        pipe: &crate::storage::pipe::Pipe,
        max: usize,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let State::Length(left) = self.state else {
            return Err(io::Error::other(
                "only a Content-Length body can be spliced",
            ));
        };
        let wire = self
            .wire
            .as_mut()
            .ok_or_else(|| io::Error::other("the body has no connection"))?;
        debug_assert!(wire.buf.is_empty(), "take_buffered first");
        let Transport::Tcp(tcp) = &mut wire.link else {
            return Err(io::Error::other("a TLS body cannot be spliced"));
        };
        let want = (left.min(max as u64) as usize).max(1);
        let n = loop {
            // With room in the pipe, EAGAIN can only mean an empty socket,
            // so clearing the socket's readiness below is right. Only this
            // body writes into the pipe: its room can only grow meanwhile.
            pipe.writable().await?;
            tcp.readable().await?;
            let sock = tcp.as_raw_fd();
            match tcp.try_io(tokio::io::Interest::READABLE, || pipe.fill_from(sock, want)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.wire = None;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection closed with {left} bytes of the body to come"),
            ));
        }
        self.consumed(n as u64);
        Ok(n)
    }

    /// Reads more from the socket into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let read_size = self.read_size;
        let wire = self
            .wire
            .as_mut()
            .expect("a body still reading owns its connection");
        wire.link.poll_read_into(cx, &mut wire.buf, read_size)
    }

    /// Whether this body travels on a plain socket, which can be spliced.
    pub fn can_splice(&self) -> bool {
        matches!(&self.wire, Some(w) if matches!(w.link, Transport::Tcp(_)))
    }

    fn buffered(&self) -> usize {
        self.wire.as_ref().map_or(0, |w| w.buf.len())
    }

    fn take(&mut self, n: usize) -> Bytes {
        let wire = self.wire.as_mut().expect("checked by buffered()");
        wire.buf.split_to(n).freeze()
    }

    /// Parses framing bytes (chunk sizes, CRLFs, trailers) already
    /// buffered; `Ok(false)` when more must be read first.
    fn step_framing(&mut self) -> io::Result<bool> {
        let bad = |d: &str| io::Error::new(io::ErrorKind::InvalidData, d.to_string());
        let wire = self
            .wire
            .as_mut()
            .expect("a body still reading owns its connection");
        match self.state {
            State::ChunkSize => match httparse::parse_chunk_size(&wire.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    wire.buf.advance(used);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Chunk(size)
                    };
                    Ok(true)
                }
                Ok(httparse::Status::Partial) if wire.buf.len() < 4096 => Ok(false),
                _ => Err(bad("invalid chunk size line")),
            },
            State::ChunkEnd => {
                if wire.buf.len() < 2 {
                    return Ok(false);
                }
                if &wire.buf[..2] != b"\r\n" {
                    return Err(bad("a chunk did not end with CRLF"));
                }
                wire.buf.advance(2);
                self.state = State::ChunkSize;
                Ok(true)
            }
            State::Trailers => {
                let Some(eol) = wire.buf.windows(2).position(|w| w == b"\r\n") else {
                    return if wire.buf.len() < MAX_HEAD {
                        Ok(false)
                    } else {
                        Err(bad("trailers too large"))
                    };
                };
                wire.buf.advance(eol + 2);
                if eol == 0 {
                    self.state = State::Done;
                }
                Ok(true)
            }
            _ => Ok(true),
        }
    }
}

impl HttpBody for PlainBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => {
                    this.finish_if_done();
                    return Poll::Ready(None);
                }
                State::Length(_) => {
                    if let Some(data) = this.take_buffered() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunk(left) => {
                    let have = this.buffered();
                    if have > 0 {
                        let n = (have as u64).min(left) as usize;
                        let data = this.take(n);
                        this.state = if n as u64 == left {
                            State::ChunkEnd
                        } else {
                            State::Chunk(left - n as u64)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::UntilClose => {
                    let have = this.buffered();
                    if have > 0 {
                        return Poll::Ready(Some(Ok(Frame::data(this.take(have)))));
                    }
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => match this.step_framing() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        this.wire = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            }
            // Nothing usable buffered: read more.
            match ready!(this.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    let clean = this.wire.as_ref().is_some_and(|w| w.link.ended_cleanly());
                    this.wire = None;
                    this.state = State::Done;
                    if !clean {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the TLS connection ended without close_notify: the body may be cut short",
                        ))));
                    }
                }
                Ok(0) => {
                    this.wire = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.wire = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Writes the request head for `GET target` with `headers`, which carry
/// `Host` like any other header.
pub fn request_head(target: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in headers {
        head.extend_from_slice(k.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback server that, on one connection, answers each request head
    /// with the next canned answer, then closes; returns the heads it read.
    async fn scripted(answers: Vec<Vec<u8>>) -> (PlainConn, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            for answer in answers {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read(&mut b).await.unwrap() == 0 {
                        return heads;
                    }
                    head.push(b[0]);
                }
                heads.push(String::from_utf8(head).unwrap());
                s.write_all(&answer).await.unwrap();
            }
            heads
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        (PlainConn::new(tcp, 8192), server)
    }

    fn get(path: &str) -> Vec<u8> {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::HOST,
            HeaderValue::from_static("example.test:8080"),
        );
        h.insert(http::header::RANGE, HeaderValue::from_static("bytes=0-4"));
        request_head(path, &h)
    }

    async fn body_of(r: Response<PlainBody>) -> io::Result<Vec<u8>> {
        Ok(r.into_body().collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn length_bodies_reuse_the_connection_and_the_head_is_sent_whole() {
        let (mut c, server) = scripted(vec![
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Range: bytes 0-4/9\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbye!".to_vec(),
        ])
        .await;
        let r = c.send(get("/a?x=1"), "h").await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 0-4/9");
        assert!(c.is_closed(), "the body holds the socket until read");
        assert_eq!(body_of(r).await.unwrap(), b"hello");
        assert!(
            !c.is_closed(),
            "a body read to its end gives the socket back"
        );
        let r = c.send(get("/b"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"bye!");
        let heads = server.await.unwrap();
        assert_eq!(
            heads[0],
            "GET /a?x=1 HTTP/1.1\r\nhost: example.test:8080\r\nrange: bytes=0-4\r\n\r\n"
        );
        assert!(heads[1].starts_with("GET /b HTTP/1.1\r\n"));
    }

    /// Reads one request head from `s`, byte by byte.
    async fn read_request(s: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read(&mut b).await.ok()? == 0 {
                return None;
            }
            head.push(b[0]);
        }
        String::from_utf8(head).ok()
    }

    #[tokio::test]
    async fn a_request_sent_ahead_reaches_the_server_while_the_body_still_flows() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Sends half of the first body, and the rest only once the second
        // request has arrived: a client that waits for the end of the
        // first answer before asking again never gets it.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let first = read_request(&mut s).await.unwrap();
            s.write_all(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nfirst")
                .await
                .unwrap();
            let second = read_request(&mut s).await.unwrap();
            s.write_all(b"half!HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\ntwo")
                .await
                .unwrap();
            (first, second)
        });
        let mut c = PlainConn::new(TcpStream::connect(addr).await.unwrap(), 8192);
        let five = std::time::Duration::from_secs(5);

        let mut body = c.send(get("/one"), "h").await.unwrap().into_body();
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&frame[..], b"first");
        body.send_ahead(&get("/two")).await.unwrap();
        let e = body.send_ahead(&get("/three")).await.unwrap_err();
        assert!(e.to_string().contains("already waiting"), "{e}");
        let rest = tokio::time::timeout(five, body.collect())
            .await
            .expect("the server waits for the request sent ahead");
        assert_eq!(&rest.unwrap().to_bytes()[..], b"half!");

        assert!(c.has_answer_pending());
        let e = c.send(get("/other"), "h").await.unwrap_err();
        assert!(e.to_string().contains("still due"), "{e}");
        let r = tokio::time::timeout(five, c.receive("h"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(body_of(r).await.unwrap(), b"two");
        assert!(!c.has_answer_pending() && !c.is_closed());
        let e = c.receive("h").await.unwrap_err();
        assert!(e.to_string().contains("no request was sent ahead"), "{e}");

        let (first, second) = server.await.unwrap();
        assert!(first.starts_with("GET /one HTTP/1.1\r\n"), "{first}");
        assert!(second.starts_with("GET /two HTTP/1.1\r\n"), "{second}");
    }

    #[tokio::test]
    async fn nothing_is_sent_ahead_on_a_connection_the_server_closes() {
        let (mut c, server) = scripted(vec![
            b"HTTP/1.1 206 Partial Content\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast"
                .to_vec(),
        ])
        .await;
        let mut body = c.send(get("/"), "h").await.unwrap().into_body();
        let e = body.send_ahead(&get("/next")).await.unwrap_err();
        assert!(e.to_string().contains("ends with this answer"), "{e}");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"last");
        assert_eq!(
            server.await.unwrap().len(),
            1,
            "only the first request was sent"
        );
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers() {
        let (mut c, server) = scripted(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ])
        .await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"hello, world");
        assert!(!c.is_closed());
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(r.status(), 204);
        assert!(body_of(r).await.unwrap().is_empty());
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn informational_answers_are_skipped() {
        let (mut c, _server) = scripted(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ])
        .await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(body_of(r).await.unwrap(), b"ok");
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_closes() {
        let (mut c, _server) = scripted(vec![b"HTTP/1.0 200 OK\r\n\r\nall of it".to_vec()]).await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"all of it");
        assert!(c.is_closed(), "a close-delimited body cannot be followed");
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let (mut c, _server) = scripted(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ])
        .await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"ok");
        assert!(c.is_closed());
        let e = c.send(get("/"), "h").await.unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
    }

    #[tokio::test]
    async fn a_short_body_is_an_error_and_an_unread_one_closes() {
        let (mut c, _server) = scripted(vec![
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
        ])
        .await;
        let r = c.send(get("/"), "h").await.unwrap();
        let e = body_of(r).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(c.is_closed());

        let (mut c, _server) = scripted(vec![
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n\r\nhel".to_vec(),
        ])
        .await;
        drop(c.send(get("/"), "h").await.unwrap());
        assert!(
            c.is_closed(),
            "a dropped, unfinished body takes the connection"
        );
    }

    #[tokio::test]
    async fn bad_heads_are_clear_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".to_vec(),
                "conflicting Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
                "invalid Content-Length",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), "invalid response head"),
            (
                [
                    b"HTTP/1.1 200 OK\r\n".as_slice(),
                    &b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(2500),
                ]
                .concat(),
                "more than 100 response headers",
            ),
            (Vec::new(), "closed the connection without answering"),
        ];
        for (answer, want) in cases {
            let (mut c, _server) = scripted(vec![answer]).await;
            let e = c.send(get("/"), "h").await.unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_length_body_splices_into_a_pipe_after_its_buffered_part() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut answer = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        answer.extend_from_slice(&data);
        answer.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let (mut c, _server) = scripted(vec![answer, Vec::new()]).await;
        let r = c.send(get("/"), "h").await.unwrap();
        let mut body = r.into_body();
        let pipe = crate::storage::pipe::Pipe::new().unwrap();
        let mut got = Vec::new();
        if let Some(b) = body.take_buffered() {
            got.extend_from_slice(&b);
        }
        while body.remaining() != Some(0) {
            let n = body.splice_into(&pipe, 64 << 10).await.unwrap();
            assert!(n > 0 && n <= 64 << 10);
            let mut buf = vec![0u8; n];
            crate::storage::pipe::read_exact(pipe.read_end(), &mut buf).unwrap();
            got.extend_from_slice(&buf);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "spliced bytes differ");
        assert!(
            !c.is_closed(),
            "a spliced body read to its end gives the socket back"
        );
    }
}
