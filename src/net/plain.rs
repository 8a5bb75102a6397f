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
use http::Response;
use http::header::HeaderMap;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::NetError;
use super::h1::{self, Decoder, Framing, Head, HeadParser, MAX_HEAD, Next, State};
use super::tls_link::TlsLink;
use crate::sync::lock;

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
    /// How often the last response head was parsed (tests check that a
    /// head cut into tiny reads is not parsed again for every read).
    head_parses: usize,
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
                head_parses: 0,
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
            // 1xx answers are informational: the real one follows.
            if parsed.status.is_informational() {
                continue;
            }
            // A response that cannot be framed safely takes the connection
            // down with it (`wire` is dropped here).
            let framing = h1::framing(&parsed).map_err(|d| http_error(host, d))?;
            let reusable = parsed.keep_alive && framing != Framing::UntilClose;
            let body = PlainBody {
                wire: Some(wire),
                home: self.home.clone(),
                dec: Decoder::new(framing),
                reusable,
                read_size: self.read_size,
            };
            let mut response = Response::new(body);
            *response.status_mut() = parsed.status;
            *response.headers_mut() = parsed.headers;
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

/// Reads and parses one response head, leaving what follows it in `wire.buf`.
async fn read_head(wire: &mut Wire, read_size: usize) -> io::Result<Head> {
    let mut parser = HeadParser::default();
    let parsed = loop {
        let parsed = parser.parse(&wire.buf);
        wire.head_parses = parser.runs();
        match parsed {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
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
    };
    let (head, len) = parsed;
    wire.buf.advance(len);
    Ok(head)
}

/// The body of a [`PlainConn`] response.
pub struct PlainBody {
    wire: Option<Wire>,
    home: Arc<Mutex<Option<Wire>>>,
    dec: Decoder,
    reusable: bool,
    read_size: usize,
}

impl std::fmt::Debug for PlainBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainBody")
            .field("state", &self.dec.state())
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl PlainBody {
    /// Body bytes not yet delivered, when the framing says (`Content-Length`).
    pub fn remaining(&self) -> Option<u64> {
        match self.dec.state() {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The `Content-Length` body bytes already read into memory (with the
    /// head, or by a read); to be delivered before anything is spliced.
    pub fn take_buffered(&mut self) -> Option<Bytes> {
        let State::Length(_) = self.dec.state() else {
            return None;
        };
        let wire = self.wire.as_mut()?;
        let Ok(Next::Data(data)) = self.dec.next(&mut wire.buf) else {
            return None;
        };
        self.finish_if_done();
        Some(data)
    }

    /// Sends the next request on this connection before this body has
    /// ended; its answer is read with [`PlainConn::receive`] once this body
    /// was read to its end. Refused when the server said it would close, or
    /// when a request is already waiting.
    pub async fn send_ahead(&mut self, head: &[u8]) -> io::Result<()> {
        if !self.reusable || self.dec.state() == State::Done {
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
        self.dec.consumed(n);
        self.finish_if_done();
    }

    /// A body read to its end gives the socket back for the next request.
    fn finish_if_done(&mut self) {
        if self.dec.state() == State::Done
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
        let State::Length(left) = self.dec.state() else {
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

    /// Ends the body with an error: the connection goes with it.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.wire = None;
        self.dec.abort();
        e
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
            let Some(wire) = this.wire.as_mut() else {
                // Read to its end (and handed back), or failed.
                return Poll::Ready(None);
            };
            match this.dec.next(&mut wire.buf) {
                Ok(Next::Data(data)) => {
                    this.finish_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Next::Done) => {
                    this.finish_if_done();
                    return Poll::Ready(None);
                }
                Ok(Next::More) => {}
                Err(e) => {
                    let e = io::Error::new(io::ErrorKind::InvalidData, e);
                    return Poll::Ready(Some(Err(this.fail(e))));
                }
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) => {
                    let clean = this.wire.as_ref().is_some_and(|w| w.link.ended_cleanly());
                    this.wire = None;
                    if let Err(e) = this.dec.end_of_stream(clean) {
                        let e = io::Error::new(io::ErrorKind::UnexpectedEof, e);
                        return Poll::Ready(Some(Err(this.fail(e))));
                    }
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.dec.state() == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.dec.state() {
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
    use http::header::HeaderValue;
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

    /// Answers that a lenient reader would frame one way and another
    /// reader another way are refused, as hyper refuses them, and the
    /// connection goes with them (what follows on it cannot be trusted).
    #[tokio::test]
    async fn ambiguous_framing_is_refused_and_drops_the_connection() {
        let cases: &[(&str, &str)] = &[
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: +5\r\n\r\nhello",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 0x5\r\n\r\nhello",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 5 5\r\n\r\nhello",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 5,\r\n\r\nhello",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 5, 6\r\n\r\nhello",
                "conflicting Content-Length",
            ),
            (
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Length: 05\r\nContent-Length: 6\r\n\r\nhello",
                "conflicting Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "both Transfer-Encoding and Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello",
                "both Transfer-Encoding and Content-Length",
            ),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "HTTP/1.0 response with Transfer-Encoding",
            ),
        ];
        for (answer, want) in cases {
            let (mut c, _server) = scripted(vec![answer.as_bytes().to_vec()]).await;
            let e = c.send(get("/"), "h").await.unwrap_err().to_string();
            assert!(e.contains(want), "{answer:?}: {e:?} should say {want:?}");
            assert!(c.is_closed(), "{answer:?}: the connection must go");
        }
        // Equal values, in one line or several, are one length.
        let (mut c, _server) = scripted(vec![
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        ])
        .await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"hello");
        assert!(!c.is_closed());
    }

    /// Chunk-size lines and trailers are bounded and must be well formed:
    /// a server cannot make us buffer or scan without end, nor end a body
    /// with a line that is not a size.
    #[tokio::test]
    async fn chunk_lines_and_trailers_are_strict_and_bounded() {
        let long_trailer = format!("X-T: {}\r\n", "a".repeat(h1::MAX_TRAILER_BYTES));
        let many_trailers = "X-T: a\r\n".repeat(h1::MAX_TRAILER_LINES + 1);
        let cases: Vec<(String, &str)> = vec![
            (format!("0\r\n{long_trailer}\r\n"), "trailers longer than"),
            (format!("0\r\n{many_trailers}\r\n"), "trailer lines"),
            ("0\r\nX-T: a\n\r\n".into(), "did not end with CRLF"),
            ("\r\nhello".into(), "invalid chunk size line"),
            (
                "5;a=\nb\r\nhello\r\n0\r\n\r\n".into(),
                "invalid chunk size line",
            ),
            (
                format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(h1::MAX_CHUNK_LINE)),
                "chunk-size line longer",
            ),
        ];
        for (body, want) in &cases {
            let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let (mut c, _server) = scripted(vec![answer.into_bytes()]).await;
            let r = c.send(get("/"), "h").await.unwrap();
            let e = body_of(r).await.unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
            assert!(c.is_closed());
        }
        // Within the bounds, trailers are skipped and the connection kept.
        let fine = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n{}\r\n",
            "X-T: a\r\n".repeat(h1::MAX_TRAILER_LINES)
        );
        let (mut c, _server) = scripted(vec![fine.into_bytes()]).await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"ok");
        assert!(!c.is_closed());
    }

    /// A TLS server on loopback that answers one request with `answer`,
    /// then ends the connection with close_notify or without it.
    async fn tls_scripted(answer: &'static [u8], close_notify: bool) -> PlainConn {
        use super::super::tls_link::testing;
        use rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
        let (link, mut server) =
            testing::loopback(&rustls::version::TLS13, TLS13_AES_128_GCM_SHA256).await;
        tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if server.read(&mut b).await.unwrap() == 0 {
                    return;
                }
                head.push(b[0]);
            }
            server.write_all(answer).await.unwrap();
            server.flush().await.unwrap();
            if close_notify {
                server.shutdown().await.unwrap();
            } else {
                // The TCP connection ends, TLS does not say so.
                let (mut tcp, _) = server.into_inner();
                tcp.shutdown().await.unwrap();
            }
        });
        PlainConn::over_tls(link, 8192)
    }

    /// Over TLS, only close_notify proves that a body running to the close
    /// is whole: an end of TCP without it could be an attacker's cut.
    #[tokio::test]
    async fn a_body_to_the_close_over_tls_is_whole_only_with_close_notify() {
        const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let mut c = tls_scripted(ANSWER, true).await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"all of it");

        let mut c = tls_scripted(ANSWER, false).await;
        let r = c.send(get("/"), "h").await.unwrap();
        let e = body_of(r).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(e.to_string().contains("close_notify"), "{e}");
        assert!(c.is_closed());

        // A length-delimited body needs no close_notify: its end is known.
        let mut c = tls_scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
        let r = c.send(get("/"), "h").await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), b"ok");
    }

    /// A head that arrives one byte per TLS record is parsed about once per
    /// line, not once per byte (which made a 64 KiB head cost about two
    /// billion byte comparisons).
    #[tokio::test]
    async fn a_head_in_one_byte_records_is_parsed_once_per_line() {
        use super::super::tls_link::testing;
        use rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
        let (link, mut server) =
            testing::loopback(&rustls::version::TLS13, TLS13_AES_128_GCM_SHA256).await;
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\nX-Pad: {}\r\n\r\nok",
            "p".repeat(4000)
        );
        let lines = head.matches('\n').count();
        tokio::spawn(async move {
            for b in head.bytes() {
                // One record each.
                server.write_all(&[b]).await.unwrap();
            }
            server.flush().await.unwrap();
            let mut rest = Vec::new();
            let _ = server.read_to_end(&mut rest).await;
        });
        let mut wire = Wire {
            link: Transport::Tls(Box::new(link)),
            buf: BytesMut::new(),
            sent_ahead: false,
            head_parses: 0,
        };
        let head = read_head(&mut wire, 8192).await.unwrap();
        assert_eq!(head.status, 206);
        assert!(
            wire.head_parses <= lines,
            "{} parses for {lines} lines",
            wire.head_parses
        );
    }
}
