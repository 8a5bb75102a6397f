//! HTTP/1.1 for the server: requests read with bounds, answers written with
//! file bodies going by `sendfile(2)`.
//!
//! Why our own and not hyper's server: the point of `serve` is moving cache
//! files to many clients at the speed of a static file server, and that
//! needs the page cache → socket path without user-space copies, which
//! hyper's body model cannot express. What is needed is small: GET, HEAD
//! and one POST with a small form body, keep-alive and pipelining (a client
//! may send the next request before the answer ends; the unread bytes stay
//! in the buffer). Every read is bounded in size and time: a request head
//! over 16 KiB or 100 headers is refused with 431, a body over 1 MiB with
//! 413, a head that takes over 20 s to arrive ends the connection.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

/// The longest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// The longest request body accepted (paths-info's form).
pub const MAX_BODY: usize = 1 << 20;
/// How long a started request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle keep-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a client may leave a write without taking any bytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes handed to one `sendfile` call.
const SENDFILE_CHUNK: usize = 2 << 20;

/// One request, as read.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (origin form: path and query).
    pub target: String,
    /// Header names in lower case, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read; each has the status the client gets
/// before the connection closes (`None`: close without an answer).
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client closed, or stayed silent: nothing to answer.
    Gone,
    Status(u16, &'static str),
}

/// Reads the next request from `stream`, keeping bytes after it in `buf`.
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Request, ReadError> {
    let mut first = true;
    let (head_len, mut req, body_len) = loop {
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::Status(431, "Request header fields too large"));
        }
        let limit = if first && buf.is_empty() {
            IDLE_TIMEOUT
        } else {
            HEAD_TIMEOUT
        };
        first = false;
        read_more(stream, buf, limit).await?;
    };
    buf.drain(..head_len);
    if body_len > buf.len()
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        // curl waits a second for this before sending a larger body.
        timed(stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"))
            .await
            .map_err(|_| ReadError::Gone)?;
    }
    while buf.len() < body_len {
        read_more(stream, buf, HEAD_TIMEOUT).await?;
    }
    req.body = buf.drain(..body_len).collect();
    Ok(req)
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        _ => Err(ReadError::Gone),
    }
}

/// The head at the start of `buf` if complete: its length, the request
/// (body still empty) and the body's length.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Status(431, "Too many request headers"));
        }
        Err(_) => return Err(ReadError::Status(400, "Malformed request")),
    };
    if head_len > MAX_HEAD {
        return Err(ReadError::Status(431, "Request header fields too large"));
    }
    let version = r.version.unwrap_or(1);
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut req = Request {
        method: r.method.unwrap_or("").to_string(),
        target: r.path.unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
        keep_alive: true,
    };
    let connection = req.header("connection").unwrap_or("").to_ascii_lowercase();
    req.keep_alive = if version == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Status(
            411,
            "Length required (no chunked bodies)",
        ));
    }
    let lengths: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let body_len = match lengths.as_slice() {
        [] => 0,
        [one] => one
            .parse::<usize>()
            .map_err(|_| ReadError::Status(400, "Malformed Content-Length"))?,
        _ => return Err(ReadError::Status(400, "Several Content-Length headers")),
    };
    if body_len > MAX_BODY {
        return Err(ReadError::Status(413, "Request body too large"));
    }
    Ok(Some((head_len, req, body_len)))
}

/// An answer's body.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `offset`.
    File {
        file: File,
        offset: u64,
        len: u64,
    },
    /// Part of a file still arriving from upstream.
    Growing(super::growing::Growing),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
            Body::Growing(g) => g.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Writes `resp` (its head only for HEAD requests): the head and a small
/// body in one write, a file body by `sendfile`. Returns the body bytes
/// sent.
pub async fn write_response(
    stream: &mut TcpStream,
    resp: Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<u64> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        // Values we build are plain; a stray CR or LF must never split a header.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = head.into_bytes();
    match resp.body {
        _ if head_only => {
            timed(stream.write_all(&out)).await?;
            Ok(0)
        }
        Body::Bytes(b) => {
            out.extend_from_slice(&b);
            timed(stream.write_all(&out)).await?;
            Ok(b.len() as u64)
        }
        Body::File { file, offset, len } => {
            timed(stream.write_all(&out)).await?;
            send_file(stream, &file, offset, len).await?;
            Ok(len)
        }
        Body::Growing(g) => {
            let len = g.len;
            timed(stream.write_all(&out)).await?;
            g.send(stream).await?;
            Ok(len)
        }
    }
}

async fn timed<T>(f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(WRITE_TIMEOUT, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

/// `len` bytes of `file` from `offset` to the socket by `sendfile(2)`: page
/// cache to socket, no copy through our memory. A file that shrank under
/// us ends the connection (the length was promised).
pub(super) async fn send_file(
    stream: &mut TcpStream,
    file: &File,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut off = offset;
    let end = offset + len;
    while off < end {
        let want = (end - off).min(SENDFILE_CHUNK as u64) as usize;
        let sent = timed(stream.async_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream.as_fd(), file.as_fd(), Some(&mut off), want)
                .map_err(io::Error::from)
        }))
        .await?;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was opened",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(usize, Request, usize)>, ReadError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn heads_are_bounded_and_strict() {
        let (n, r, body) = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert_eq!(
            (n, r.target.as_str(), body, r.keep_alive),
            (32, "/a?b=1", 0, true)
        );
        assert!(head("GET /a HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let r = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().1;
        assert!(!r.keep_alive, "HTTP/1.0 closes unless asked");
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            ReadError::Status(431, "Too many request headers")
        );
        for bad in [
            "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "G\0T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(ReadError::Status(400, _))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::Status(411, _))
        ));
        assert!(matches!(
            head("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(ReadError::Status(413, _))
        ));
    }
}
