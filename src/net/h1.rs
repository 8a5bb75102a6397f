//! HTTP/1.1 response framing for our own client ([`super::plain`]), without
//! any I/O: the response head, how the body is delimited, and the body's
//! chunked coding. [`super::plain`] feeds it what the socket (or TLS)
//! delivers; the `http_response` fuzz target feeds it arbitrary bytes cut at
//! arbitrary points ([`decode`]).
//!
//! Where RFC 9112 lets a client guess, this refuses: a downloader writes
//! what it reads into a file, and a body whose end is ambiguous would put
//! wrong bytes there. The rules follow hyper's client (whose parser,
//! httparse, reads the head here too), and are stricter in one place:
//! a response with both `Transfer-Encoding` and `Content-Length` is refused
//! (hyper lets Transfer-Encoding win, as RFC 9112 section 6.3 allows; the
//! same section says such a message "ought to be handled as an error").
//!
//! Work stays linear in the bytes received, however they are cut: httparse
//! runs only after a read that brought a line end, and framing lines are
//! searched from where the last search stopped.

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http::header::TRANSFER_ENCODING;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};

/// A response head larger than this is refused (hyper's default is similar).
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// A chunk-size line (with its extensions) longer than this is refused.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Trailers after a chunked body: at most this many lines and bytes.
pub const MAX_TRAILER_LINES: usize = MAX_HEADERS;
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The connection may carry another request after this answer.
    pub keep_alive: bool,
    /// The server answered as HTTP/1.0.
    pub http10: bool,
}

/// Finds and parses one response head in a buffer that grows by reads.
#[derive(Debug, Default)]
pub struct HeadParser {
    /// How much of the buffer was already looked at for a line end.
    seen: usize,
    /// How often httparse ran (tests check that this stays small).
    runs: usize,
}

impl HeadParser {
    /// The head and its length once `buf` holds all of it; `None` while
    /// more is needed. `buf` must only have grown since the last call.
    ///
    /// A head can only be complete once a line has ended since the last
    /// look, so httparse runs only then: a head trickling in one byte per
    /// TLS record costs a parse per line, not per byte. httparse refuses
    /// a head after [`MAX_HEADERS`] lines, which bounds the runs.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
        let fresh = &buf[self.seen.min(buf.len())..];
        let line_ended = fresh.contains(&b'\n');
        self.seen = buf.len();
        if line_ended {
            self.runs += 1;
            if let Some(done) = parse_head(buf)? {
                return Ok(Some(done));
            }
        }
        if buf.len() >= MAX_HEAD {
            return Err(format!("a response head larger than {MAX_HEAD} bytes"));
        }
        Ok(None)
    }

    /// How often httparse ran so far.
    pub fn runs(&self) -> usize {
        self.runs
    }
}

/// One httparse run over everything received; `None` when incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut slots);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} response headers"));
        }
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    // Also when it arrived in one read: the limit must not depend on how
    // the bytes were cut.
    if len > MAX_HEAD {
        return Err(format!("a response head larger than {MAX_HEAD} bytes"));
    }
    let code = r.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("invalid value of header {}", h.name))?;
        headers.append(name, value);
    }
    let http10 = r.version != Some(1);
    let close = has_token(&headers, &CONNECTION, "close");
    // HTTP/1.0 closes unless it says otherwise.
    let keep_alive = !close && (!http10 || has_token(&headers, &CONNECTION, "keep-alive"));
    let head = Head {
        status,
        headers,
        keep_alive,
        http10,
    };
    Ok(Some((head, len)))
}

fn has_token(h: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How the body of `head` is delimited (RFC 9112 section 6.3), or why the
/// response cannot be read safely. Such a response ends its connection.
pub fn framing(head: &Head) -> Result<Framing, String> {
    let h = &head.headers;
    if head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if h.contains_key(TRANSFER_ENCODING) {
        if head.http10 {
            // HTTP/1.0 has no transfer codings (RFC 9112 section 6.1).
            return Err("an HTTP/1.0 response with Transfer-Encoding".into());
        }
        if h.contains_key(CONTENT_LENGTH) {
            return Err(
                "a response with both Transfer-Encoding and Content-Length: where its body ends is ambiguous"
                    .into(),
            );
        }
        return Ok(if last_coding_is_chunked(h) {
            Framing::Chunked
        } else {
            // Not chunked last: only the end of the connection ends it.
            Framing::UntilClose
        });
    }
    Ok(content_length(h)?.map_or(Framing::UntilClose, Framing::Length))
}

fn last_coding_is_chunked(h: &HeaderMap) -> bool {
    h.get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// The `Content-Length`, if any. Every value must be plain decimal digits
/// (no sign, no spaces inside) and all of them equal: a list like `5, 5`
/// from a proxy that merged two lines is fine, `5, 6` or `+5` is not.
fn content_length(h: &HeaderMap) -> Result<Option<u64>, String> {
    let mut length = None;
    for v in h.get_all(CONTENT_LENGTH) {
        let invalid = || format!("invalid Content-Length {v:?}");
        let text = v.to_str().map_err(|_| invalid())?;
        for part in text.split(',') {
            let n = decimal(part.trim()).ok_or_else(invalid)?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// ASCII digits only: `str::parse` would also take a leading `+`.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Where a body decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
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

/// What the buffered bytes gave.
#[derive(Debug)]
pub enum Next {
    Data(Bytes),
    /// More bytes must be read first.
    More,
    /// The body ended (nothing of it is left in the buffer).
    Done,
}

/// Takes a response body out of the bytes that follow its head.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// How much of the buffer was already searched for a line end.
    scanned: usize,
    trailer_lines: usize,
    trailer_bytes: usize,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        Decoder {
            state: match framing {
                Framing::Length(0) => State::Done,
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::ChunkSize,
                Framing::UntilClose => State::UntilClose,
            },
            scanned: 0,
            trailer_lines: 0,
            trailer_bytes: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    fn set(&mut self, state: State) {
        self.state = state;
        self.scanned = 0;
    }

    /// Ends the body here (an error while reading it).
    pub fn abort(&mut self) {
        self.set(State::Done);
    }

    /// `n` bytes of a `Content-Length` body were delivered by other means
    /// (spliced); `n` is at most what remains.
    pub fn consumed(&mut self, n: u64) {
        if let State::Length(left) = self.state {
            debug_assert!(n <= left);
            let left = left - n.min(left);
            self.set(if left == 0 {
                State::Done
            } else {
                State::Length(left)
            });
        }
    }

    /// The next piece of the body from `buf`, which holds what was read
    /// after the head and grows by reads; what is used is taken off it.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Next, String> {
        loop {
            match self.state {
                State::Done => return Ok(Next::Done),
                State::Length(left) => return Ok(self.data(buf, left)),
                State::Chunk(left) => return Ok(self.data(buf, left)),
                State::UntilClose if buf.is_empty() => return Ok(Next::More),
                State::UntilClose => return Ok(Next::Data(buf.split().freeze())),
                State::ChunkSize => {
                    if !self.chunk_size(buf)? {
                        return Ok(Next::More);
                    }
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Next::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk did not end with CRLF".into());
                    }
                    buf.advance(2);
                    self.set(State::ChunkSize);
                }
                State::Trailers => {
                    if !self.trailer(buf)? {
                        return Ok(Next::More);
                    }
                }
            }
        }
    }

    /// The end of the stream came: fine only for a body that runs to the
    /// close, and then only when the transport can prove nothing was cut
    /// off (`clean`: always on TCP, after close_notify on TLS).
    pub fn end_of_stream(&mut self, clean: bool) -> Result<(), &'static str> {
        let was = self.state;
        self.set(State::Done);
        match was {
            State::Done => Ok(()),
            State::UntilClose if clean => Ok(()),
            State::UntilClose => {
                Err("the TLS connection ended without close_notify: the body may be cut short")
            }
            _ => Err("the connection closed before the end of the body"),
        }
    }

    /// Up to `left` bytes of data from `buf`.
    fn data(&mut self, buf: &mut BytesMut, left: u64) -> Next {
        if buf.is_empty() {
            return Next::More;
        }
        let n = (buf.len() as u64).min(left);
        let data = buf.split_to(n as usize).freeze();
        let left = left - n;
        self.set(match self.state {
            State::Length(_) if left == 0 => State::Done,
            State::Length(_) => State::Length(left),
            _ if left == 0 => State::ChunkEnd,
            _ => State::Chunk(left),
        });
        Next::Data(data)
    }

    /// The index of the `\n` ending the line at the start of `buf`,
    /// searching only bytes not searched before.
    fn line_end(&mut self, buf: &[u8], limit: usize, what: &str) -> Result<Option<usize>, String> {
        // A line (with its `\n`) of `limit` bytes is fine, one byte more
        // is not, however the bytes arrived.
        let too_long = || Err(format!("{what} longer than {limit} bytes"));
        let from = self.scanned.min(buf.len());
        if let Some(i) = buf[from..].iter().position(|&b| b == b'\n') {
            self.scanned = 0;
            return if from + i < limit {
                Ok(Some(from + i))
            } else {
                too_long()
            };
        }
        self.scanned = buf.len();
        if buf.len() >= limit {
            return too_long();
        }
        Ok(None)
    }

    /// Reads a chunk-size line; `false` when it is not all there yet.
    fn chunk_size(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        let Some(eol) = self.line_end(buf, MAX_CHUNK_LINE, "a chunk-size line")? else {
            return Ok(false);
        };
        let line = &buf[..=eol];
        // httparse takes an empty line for size 0, and a bare LF inside an
        // extension: both are refused here, as hyper does.
        let size = match httparse::parse_chunk_size(line) {
            Ok(httparse::Status::Complete((used, size)))
                if used == line.len() && line[0].is_ascii_hexdigit() =>
            {
                size
            }
            _ => return Err("invalid chunk size line".into()),
        };
        buf.advance(eol + 1);
        self.set(if size == 0 {
            State::Trailers
        } else {
            State::Chunk(size)
        });
        Ok(true)
    }

    /// Reads one trailer line (they are skipped); `false` when it is not
    /// all there yet.
    fn trailer(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        // The empty line that ends them always fits.
        let room = (MAX_TRAILER_BYTES - self.trailer_bytes).max(2);
        let too_long = |_| format!("trailers longer than {MAX_TRAILER_BYTES} bytes");
        let Some(eol) = self.line_end(buf, room, "trailers").map_err(too_long)? else {
            return Ok(false);
        };
        if eol == 0 || buf[eol - 1] != b'\r' {
            return Err("a trailer line did not end with CRLF".into());
        }
        buf.advance(eol + 1);
        if eol == 1 {
            self.set(State::Done);
            return Ok(true);
        }
        self.trailer_bytes += eol + 1;
        self.trailer_lines += 1;
        if self.trailer_lines > MAX_TRAILER_LINES {
            return Err(format!("more than {MAX_TRAILER_LINES} trailer lines"));
        }
        Ok(true)
    }
}

/// What [`decode`] made of a response.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub status: u16,
    pub framing: Framing,
    pub body: Vec<u8>,
    /// The connection could carry the next request.
    pub keep_alive: bool,
    /// Bytes after the body (the next answer on a kept connection).
    pub rest: usize,
}

/// Reads one final response (informational ones are skipped) from
/// `pieces`, as successive reads would deliver them, the way
/// [`super::plain`] does, then the end of the stream, `clean` or not.
/// `runs` gets how often httparse ran. For the fuzz target and tests.
pub fn decode(pieces: &[&[u8]], clean: bool, runs: &mut usize) -> Result<Decoded, String> {
    let mut feed = pieces.iter();
    let mut buf = BytesMut::new();
    let mut more = |buf: &mut BytesMut| match feed.next() {
        Some(p) => {
            buf.extend_from_slice(p);
            true
        }
        None => false,
    };
    let head = loop {
        let mut parser = HeadParser::default();
        let before = *runs;
        let (head, len) = loop {
            let parsed = parser.parse(&buf);
            *runs = before + parser.runs();
            if let Some(done) = parsed? {
                break done;
            }
            if !more(&mut buf) {
                return Err("the connection closed inside the response head".into());
            }
        };
        buf.advance(len);
        if !head.status.is_informational() {
            break head;
        }
    };
    let framing = framing(&head)?;
    let mut decoder = Decoder::new(framing);
    let mut body = Vec::new();
    loop {
        match decoder.next(&mut buf)? {
            Next::Data(d) => body.extend_from_slice(&d),
            Next::Done => break,
            Next::More => {
                if !more(&mut buf) {
                    decoder.end_of_stream(clean)?;
                    break;
                }
            }
        }
    }
    let rest = buf.len() + feed.map(|p| p.len()).sum::<usize>();
    Ok(Decoded {
        status: head.status.as_u16(),
        framing,
        body,
        keep_alive: head.keep_alive && framing != Framing::UntilClose,
        rest,
    })
}
