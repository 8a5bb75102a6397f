//! A deliberately small blocking HTTP/1.1 client for the server's own
//! tests. It reports exactly how a body ended (complete, EOF, reset,
//! timeout), which is what the fault tests need and what a full client
//! library would paper over.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How reading a response body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// All promised bytes arrived (or EOF when no length was promised).
    Complete,
    /// Clean EOF before the promised length.
    Eof,
    /// Connection reset.
    Reset,
    /// Nothing arrived within the read timeout.
    Timeout,
    Other(String),
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub end: End,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Client {
    stream: TcpStream,
    /// Bytes read past the current message.
    pending: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Sends a request without reading the answer.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).expect("send request");
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(method, path, headers, b"");
        self.read_response(method == "HEAD")
    }

    fn fill(&mut self) -> Result<usize, End> {
        let mut buf = vec![0u8; 64 << 10];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) => Err(classify(&e)),
        }
    }

    pub fn read_response(&mut self, head_only: bool) -> Resp {
        let head_end = loop {
            if let Some(i) = find(&self.pending, b"\r\n\r\n") {
                break i;
            }
            match self.fill() {
                Ok(0) => panic!(
                    "EOF before a response head: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
                Ok(_) => {}
                Err(e) => panic!("no response head: {e:?}"),
            }
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            end: End::Complete,
        };
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            resp.end = self.read_chunked(&mut resp.body);
        } else if let Some(len) = resp
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            resp.end = self.read_exact_or_end(len, &mut resp.body);
        } else {
            resp.end = self.read_to_end(&mut resp.body);
        }
        resp
    }

    fn read_exact_or_end(&mut self, len: usize, out: &mut Vec<u8>) -> End {
        loop {
            let take = self.pending.len().min(len - out.len());
            out.extend(self.pending.drain(..take));
            if out.len() == len {
                return End::Complete;
            }
            match self.fill() {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> End {
        loop {
            out.append(&mut self.pending);
            match self.fill() {
                Ok(0) => return End::Complete,
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    fn read_chunked(&mut self, out: &mut Vec<u8>) -> End {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.pending, b"\r\n") {
                    break i;
                }
                match self.fill() {
                    Ok(0) => return End::Eof,
                    Ok(_) => {}
                    Err(e) => return e,
                }
            };
            let line = String::from_utf8_lossy(&self.pending[..line_end]).into_owned();
            self.pending.drain(..line_end + 2);
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            // The chunk plus its CRLF (or the final CRLF after size 0).
            let mut chunk = Vec::new();
            let end = self.read_exact_or_end(size + 2, &mut chunk);
            if end != End::Complete {
                out.extend_from_slice(&chunk[..chunk.len().min(size)]);
                return end;
            }
            if size == 0 {
                return End::Complete;
            }
            out.extend_from_slice(&chunk[..size]);
        }
    }

    /// Reads whatever arrives until EOF, reset or timeout.
    pub fn read_until_closed(&mut self) -> (Vec<u8>, End) {
        let mut out = Vec::new();
        let end = loop {
            out.append(&mut self.pending);
            match self.fill() {
                Ok(0) => break End::Eof,
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        (out, end)
    }
}

fn classify(e: &io::Error) -> End {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => End::Reset,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::Timeout,
        _ => End::Other(e.to_string()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub(crate) fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    Client::connect(addr).request("GET", path, headers)
}
