//! TLS under our own HTTP/1.1 client: rustls does the handshake, we open
//! and seal the records.
//!
//! Through tokio-rustls and hyper, a body byte is copied three times in user
//! space: rustls decrypts a record in its own buffer and copies the plaintext
//! into a fresh `Vec`, tokio-rustls copies that into hyper's read buffer, and
//! storage copies it into the page cache. Profiles put those copies and
//! allocations at about a fifth of a TLS download's CPU (docs/performance.md).
//! rustls's kernel-connection API, made for kTLS, hands over the traffic keys
//! once the handshake is done and keeps the state only it can have (session
//! tickets, key updates). Here records are read in large pieces and opened in
//! place, and the plaintext leaves as a slice of the read buffer: one copy
//! from the socket, one into the page cache. It also lets TLS connections
//! pipeline their requests like plain ones ([`super::plain`]).
//!
//! Certificate checks, the key schedule and resumption stay in rustls.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError};
use rustls::{ClientConfig, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::BoxIo;
use super::tls_record::{
    ALERT, APPLICATION_DATA, HANDSHAKE, HEADER, MAX_BODY, MAX_PLAINTEXT, Protection, RecordError,
    Version,
};

/// Handshake messages after the handshake that we act on (RFC 8446 4.6).
const HELLO_REQUEST: u8 = 0;
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
/// Largest post-handshake message accepted (session tickets are small).
const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;

/// Alerts we send before dropping a connection on a record we refuse
/// (RFC 8446 section 6.2), so that the server's log says why.
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const ILLEGAL_PARAMETER: u8 = 47;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;

/// One TLS connection after its handshake.
pub struct TlsLink {
    io: BoxIo,
    /// Bytes read and not yet opened: whole records, then part of one.
    raw: BytesMut,
    rx: Protection,
    tx: Protection,
    version: Version,
    kernel: KernelConnection<ClientConnectionData>,
    /// Post-handshake handshake bytes; a message may span records.
    handshake: Vec<u8>,
    /// The server asked for a key update: ours goes out before our next record.
    owe_key_update: bool,
    /// The server sent close_notify: no truncation is possible.
    closed: bool,
    /// A record was refused: nothing more is read or sent.
    failed: bool,
    info: String,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// rustls errors keep their type inside the `io::Error`, so that callers can
/// tell a certificate problem from others (as with tokio-rustls).
fn tls(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A stream we refuse, and the alert that tells the server why (none when
/// the server itself ended it: its alert, or the connection closing).
struct Refusal {
    alert: Option<u8>,
    error: io::Error,
}

impl Refusal {
    fn new(alert: u8, e: impl std::fmt::Display) -> Refusal {
        Refusal {
            alert: Some(alert),
            error: invalid(e),
        }
    }

    fn silent(error: io::Error) -> Refusal {
        Refusal { alert: None, error }
    }
}

/// The alert for a record that could not be opened.
fn record_alert(e: &RecordError) -> u8 {
    match e {
        RecordError::BadTag | RecordError::TooShort(_) => BAD_RECORD_MAC,
        RecordError::TooLarge(_) => RECORD_OVERFLOW,
        RecordError::NoContentType => UNEXPECTED_MESSAGE,
        RecordError::SequenceExhausted | RecordError::Unsupported(_) => INTERNAL_ERROR,
    }
}

/// Where the record starting at `from` in `buf` ends, if it is all there.
fn record_end(buf: &[u8], from: usize) -> Option<usize> {
    let header = buf.get(from..from + HEADER)?;
    let end = from + HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
    (end <= buf.len()).then_some(end)
}

fn closed_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection during the TLS handshake",
    )
}

/// What the next record in `raw` gave.
enum Step {
    Data(BytesMut),
    /// A record with nothing for the caller (ticket, key update, empty).
    Again,
    /// This many bytes of `raw` are needed before a record can be opened.
    NeedMore(usize),
    Closed,
}

/// Appends the handshake's next records to `outgoing`, growing it as rustls
/// asks.
fn encode(
    enc: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::client::ClientConnectionData>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    let at = outgoing.len();
    outgoing.resize(at + 4096, 0);
    loop {
        match enc.encode(&mut outgoing[at..]) {
            Ok(n) => {
                outgoing.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                outgoing.resize(at + required_size, 0)
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

impl TlsLink {
    /// Runs the handshake on `io` and takes over its records.
    ///
    /// rustls sees the records one at a time, and none once the handshake
    /// is done: records that came in the same read as the server's last
    /// handshake record are ours to open. Given the whole buffer, rustls
    /// would go on and open them itself (and the handshake would fail on
    /// a state it has no use for).
    pub async fn handshake(
        mut io: BoxIo,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsLink> {
        let mut conn = UnbufferedClientConnection::new(config, name).map_err(tls)?;
        let mut incoming = BytesMut::with_capacity(HEADER + MAX_BODY);
        let mut outgoing: Vec<u8> = Vec::new();
        // How much of `incoming` rustls may look at: whole records.
        let mut shown = 0;
        loop {
            if !conn.is_handshaking() && !conn.wants_write() {
                // Our last flight (the client Finished) may still be here.
                io.write_all(&outgoing).await?;
                io.flush().await?;
                break;
            }
            let status = conn.process_tls_records(&mut incoming[..shown]);
            let discard = status.discard;
            let mut read = false;
            let mut done = false;
            match status.state.map_err(tls)? {
                ConnectionState::EncodeTlsData(mut enc) => encode(&mut enc, &mut outgoing)?,
                ConnectionState::TransmitTlsData(t) => {
                    io.write_all(&outgoing).await?;
                    io.flush().await?;
                    outgoing.clear();
                    t.done();
                }
                ConnectionState::BlockedHandshake => match record_end(&incoming, shown) {
                    Some(end) => shown = end,
                    None => read = true,
                },
                ConnectionState::WriteTraffic(_) => done = true,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(closed_in_handshake());
                }
                other => {
                    return Err(invalid(format!(
                        "unexpected TLS state during the handshake: {other:?}"
                    )));
                }
            }
            incoming.advance(discard);
            shown -= discard;
            if done {
                break;
            }
            if read {
                incoming.reserve(HEADER + MAX_BODY);
                if io.read_buf(&mut incoming).await? == 0 {
                    return Err(closed_in_handshake());
                }
            }
        }
        TlsLink::take_over(io, incoming, conn)
    }

    /// The link over `io` once `conn`'s handshake is done; `incoming` holds
    /// what was read past the handshake.
    fn take_over(
        io: BoxIo,
        incoming: BytesMut,
        conn: UnbufferedClientConnection,
    ) -> io::Result<TlsLink> {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => Version::Tls13,
            Some(ProtocolVersion::TLSv1_2) => Version::Tls12,
            other => return Err(invalid(format!("unsupported TLS version {other:?}"))),
        };
        let info = super::tls::describe(&conn);
        let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls)?;
        let (rx_seq, rx) = secrets.rx;
        let (tx_seq, tx) = secrets.tx;
        Ok(TlsLink {
            io,
            raw: incoming,
            rx: Protection::new(version, rx_seq, rx).map_err(invalid)?,
            tx: Protection::new(version, tx_seq, tx).map_err(invalid)?,
            version,
            kernel,
            handshake: Vec::new(),
            owe_key_update: false,
            closed: false,
            failed: false,
            info,
        })
    }

    /// Version, cipher suite and ALPN, for `-v`.
    pub fn info(&self) -> &str {
        &self.info
    }

    /// True once the server closed with close_notify, which proves that
    /// nothing was cut off.
    pub fn closed_cleanly(&self) -> bool {
        self.closed
    }

    /// Sends `data` as application data records.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the TLS connection was given up"));
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        if std::mem::take(&mut self.owe_key_update) {
            // update_not_requested, under the old key; then the new key.
            self.tx
                .seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], &mut out)
                .map_err(invalid)?;
            let (seq, secrets) = self.kernel.update_tx_secret().map_err(tls)?;
            self.tx = Protection::new(self.version, seq, secrets).map_err(invalid)?;
        }
        for piece in data.chunks(MAX_PLAINTEXT) {
            self.tx
                .seal(APPLICATION_DATA, piece, &mut out)
                .map_err(invalid)?;
        }
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// The next application data, opened in place: a slice of the read
    /// buffer, not a copy. `None` at the end of the stream, with
    /// [`closed_cleanly`](Self::closed_cleanly) telling how it ended.
    /// Reads take up to `read_size` bytes at once (many records).
    pub fn poll_plain(
        &mut self,
        cx: &mut Context<'_>,
        read_size: usize,
    ) -> Poll<io::Result<Option<BytesMut>>> {
        if self.failed {
            return Poll::Ready(Err(io::Error::other("the TLS connection was given up")));
        }
        loop {
            let step = match self.open_next() {
                Ok(step) => step,
                Err(refusal) => return Poll::Ready(Err(self.give_up(cx, refusal))),
            };
            let need = match step {
                Step::Data(d) => return Poll::Ready(Ok(Some(d))),
                Step::Closed => return Poll::Ready(Ok(None)),
                Step::Again => continue,
                Step::NeedMore(n) => n,
            };
            // Room for the record under way, else a fresh buffer: the
            // slices handed out keep the old one alive until written.
            let room = self.raw.capacity() - self.raw.len();
            if room < need - self.raw.len() || room < HEADER + MAX_BODY / 4 {
                self.raw.reserve(read_size.max(HEADER + MAX_BODY));
            }
            let n = std::task::ready!(tokio_util::io::poll_read_buf(
                std::pin::Pin::new(&mut self.io),
                cx,
                &mut self.raw
            ))?;
            if n == 0 {
                if self.raw.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed inside a TLS record",
                )));
            }
        }
    }

    /// Marks the link as failed and tells the server why, if it is to be
    /// told: one alert record, written only if the socket takes it at
    /// once (the connection is dropped right after, whatever happens).
    fn give_up(&mut self, cx: &mut Context<'_>, refusal: Refusal) -> io::Error {
        self.failed = true;
        if let Some(description) = refusal.alert {
            let mut out = Vec::with_capacity(HEADER + 2 + 64);
            // Level 2: fatal.
            if self.tx.seal(ALERT, &[2, description], &mut out).is_ok() {
                let mut io = std::pin::Pin::new(&mut self.io);
                if let Poll::Ready(Ok(n)) = io.as_mut().poll_write(cx, &out)
                    && n == out.len()
                {
                    let _ = io.poll_flush(cx);
                }
            }
        }
        refusal.error
    }

    fn open_next(&mut self) -> Result<Step, Refusal> {
        if self.closed {
            return Ok(Step::Closed);
        }
        if self.raw.len() < HEADER {
            return Ok(Step::NeedMore(HEADER));
        }
        let header: [u8; HEADER] = self.raw[..HEADER].try_into().expect("5 bytes");
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len > MAX_BODY {
            return Err(Refusal::new(
                RECORD_OVERFLOW,
                format!("a TLS record of {len} bytes is larger than TLS allows"),
            ));
        }
        if self.raw.len() < HEADER + len {
            return Ok(Step::NeedMore(HEADER + len));
        }
        self.check_header(header)?;
        let mut record = self.raw.split_to(HEADER + len);
        let opened = self
            .rx
            .open(header, &mut record[HEADER..])
            .map_err(|e| Refusal::new(record_alert(&e), e))?;
        record.advance(HEADER + opened.start);
        record.truncate(opened.len);
        // RFC 8446 section 5.1: a handshake message split over records
        // has nothing else between its pieces.
        if opened.content_type != HANDSHAKE && !self.handshake.is_empty() {
            return Err(Refusal::new(
                UNEXPECTED_MESSAGE,
                "a TLS record came between the pieces of a handshake message",
            ));
        }
        match opened.content_type {
            APPLICATION_DATA if record.is_empty() => Ok(Step::Again),
            APPLICATION_DATA => Ok(Step::Data(record)),
            ALERT => self.alert(&record),
            HANDSHAKE => {
                self.handshake.extend_from_slice(&record);
                self.handshake_messages()?;
                Ok(Step::Again)
            }
            t => Err(Refusal::new(
                UNEXPECTED_MESSAGE,
                format!("unexpected TLS content type {t}"),
            )),
        }
    }

    /// The outer type and version a record may have after the handshake:
    /// TLS 1.3 hides the real type inside; TLS 1.2 records carry the
    /// negotiated version, 3.3.
    fn check_header(&self, header: [u8; HEADER]) -> Result<(), Refusal> {
        let ok = match self.version {
            Version::Tls13 => header[0] == APPLICATION_DATA && header[1] == 3,
            Version::Tls12 => {
                matches!(header[0], ALERT | HANDSHAKE | APPLICATION_DATA) && header[1..3] == [3, 3]
            }
        };
        if ok {
            return Ok(());
        }
        Err(Refusal::new(
            UNEXPECTED_MESSAGE,
            format!(
                "unexpected TLS record (type {}, version {}.{}) after the handshake",
                header[0], header[1], header[2]
            ),
        ))
    }

    /// An alert from the server: close_notify ends the stream cleanly,
    /// anything else ends it with an error (and no alert back).
    fn alert(&mut self, record: &[u8]) -> Result<Step, Refusal> {
        match *record {
            [level, _] if level != 1 && level != 2 => Err(Refusal::new(
                ILLEGAL_PARAMETER,
                format!("a TLS alert of unknown level {level}"),
            )),
            [_, 0] => {
                self.closed = true;
                Ok(Step::Closed)
            }
            [level, description] => Err(Refusal::silent(invalid(format!(
                "the server sent TLS alert {description} (level {level})"
            )))),
            _ => Err(Refusal::new(DECODE_ERROR, "a malformed TLS alert")),
        }
    }

    /// Acts on the complete post-handshake messages received so far.
    fn handshake_messages(&mut self) -> Result<(), Refusal> {
        while self.handshake.len() >= 4 {
            let h = &self.handshake;
            let kind = h[0];
            let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            if len > MAX_HANDSHAKE_MESSAGE {
                return Err(Refusal::new(
                    UNEXPECTED_MESSAGE,
                    format!("a TLS handshake message of {len} bytes after the handshake"),
                ));
            }
            if h.len() < 4 + len {
                return Ok(());
            }
            let body: Vec<u8> = h[4..4 + len].to_vec();
            self.handshake.drain(..4 + len);
            match (self.version, kind) {
                (Version::Tls13, NEW_SESSION_TICKET) => {
                    // Stored for resumption; a bad ticket only costs that.
                    if let Err(e) = self.kernel.handle_new_session_ticket(&body) {
                        tracing::debug!("TLS session ticket ignored: {e}");
                    }
                }
                (Version::Tls13, KEY_UPDATE) => self.key_update(&body)?,
                (_, HELLO_REQUEST) => {
                    return Err(Refusal::new(
                        UNEXPECTED_MESSAGE,
                        "the server asked to renegotiate TLS, which is not supported",
                    ));
                }
                (_, k) => {
                    return Err(Refusal::new(
                        UNEXPECTED_MESSAGE,
                        format!("unexpected TLS handshake message {k} after the handshake"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The server changes its key. Records after this one are under the
    /// new key, so nothing may follow the KeyUpdate in its record
    /// (RFC 8446 section 5.1: handshake messages must not span a key change).
    fn key_update(&mut self, body: &[u8]) -> Result<(), Refusal> {
        if !self.handshake.is_empty() {
            return Err(Refusal::new(
                UNEXPECTED_MESSAGE,
                "a TLS key update did not end its record",
            ));
        }
        let requested = match *body {
            [0] => false,
            [1] => true,
            [_] => {
                return Err(Refusal::new(
                    ILLEGAL_PARAMETER,
                    "a TLS key update of unknown kind",
                ));
            }
            _ => return Err(Refusal::new(DECODE_ERROR, "a malformed TLS key update")),
        };
        let (seq, secrets) = self
            .kernel
            .update_rx_secret()
            .map_err(|e| Refusal::new(INTERNAL_ERROR, e))?;
        self.rx = Protection::new(self.version, seq, secrets)
            .map_err(|e| Refusal::new(INTERNAL_ERROR, e))?;
        self.owe_key_update |= requested;
        Ok(())
    }
}

/// Runs our TLS client over `io` and reads what the server sends to its
/// end: the plaintext, then whether the stream ended cleanly
/// (close_notify) or with an error. The outer error is a failed
/// handshake. For the `tls_records` fuzz target, which compares this
/// with rustls's own reading of the same bytes.
#[doc(hidden)]
pub async fn read_to_end<T>(
    io: T,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    read_size: usize,
) -> io::Result<(Vec<u8>, io::Result<bool>)>
where
    T: tokio::io::AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut link = TlsLink::handshake(Box::new(io), config, name).await?;
    let mut plain = Vec::new();
    loop {
        match std::future::poll_fn(|cx| link.poll_plain(cx, read_size)).await {
            Ok(Some(data)) => plain.extend_from_slice(&data),
            Ok(None) => return Ok((plain, Ok(link.closed_cleanly()))),
            Err(e) => return Ok((plain, Err(e))),
        }
    }
}

/// TLS peers for tests here and in [`super::plain`].
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedProtocolVersion};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::server::TlsStream;

    /// A server and a client config that agree on `version` and `suite`.
    pub fn configs(
        version: &'static SupportedProtocolVersion,
        suite: CipherSuite,
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let mut p = rustls::crypto::ring::default_provider();
        p.cipher_suites
            .retain(|s| s.suite() == suite || (s.version() != version && s.suite() != suite));
        let provider: Arc<CryptoProvider> = Arc::new(p);
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        (Arc::new(server), Arc::new(client))
    }

    /// Our link and a tokio-rustls server over a loopback TCP connection.
    pub async fn loopback(
        version: &'static SupportedProtocolVersion,
        suite: CipherSuite,
    ) -> (TlsLink, TlsStream<TcpStream>) {
        let (server_cfg, client_cfg) = configs(version, suite);
        loopback_with(server_cfg, client_cfg).await
    }

    pub async fn loopback_with(
        server_cfg: Arc<ServerConfig>,
        client_cfg: Arc<ClientConfig>,
    ) -> (TlsLink, TlsStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsAcceptor::from(server_cfg).accept(tcp).await
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let link = TlsLink::handshake(Box::new(tcp), client_cfg, name)
            .await
            .unwrap();
        (link, accept.await.unwrap().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::configs;
    use super::*;
    use rustls::{CipherSuite, SupportedProtocolVersion};
    use std::future::poll_fn;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::server::TlsStream;

    async fn connect(
        version: &'static SupportedProtocolVersion,
        suite: CipherSuite,
    ) -> (TlsLink, TlsStream<DuplexStream>) {
        let (server_cfg, client_cfg) = configs(version, suite);
        let (c, s) = duplex(1 << 20);
        let accept = tokio::spawn(async move { TlsAcceptor::from(server_cfg).accept(s).await });
        let name = ServerName::try_from("localhost").unwrap();
        let link = TlsLink::handshake(Box::new(c), client_cfg, name)
            .await
            .unwrap();
        (link, accept.await.unwrap().unwrap())
    }

    async fn next(link: &mut TlsLink) -> io::Result<Option<BytesMut>> {
        poll_fn(|cx| link.poll_plain(cx, 64 << 10)).await
    }

    /// [`next`], for a link that must not wait: the answer is there.
    async fn next_now(link: &mut TlsLink) -> io::Result<Option<BytesMut>> {
        tokio::time::timeout(Duration::from_secs(5), next(link))
            .await
            .expect("an answer, not a wait for more")
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Both directions, across many records, with the server's session
    /// tickets (TLS 1.3) in the stream, a key update the server asks us to
    /// answer, and close_notify at the end; in both versions and with AES
    /// and ChaCha20.
    #[tokio::test]
    async fn data_flows_both_ways_through_key_updates_to_close_notify() {
        use rustls::version::{TLS12, TLS13};
        let cases = [
            (&TLS13, CipherSuite::TLS13_AES_128_GCM_SHA256),
            (&TLS13, CipherSuite::TLS13_AES_256_GCM_SHA384),
            (&TLS13, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            (&TLS12, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            (
                &TLS12,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        for (version, suite) in cases {
            let tls13 = version.version == ProtocolVersion::TLSv1_3;
            let (mut link, mut server) = connect(version, suite).await;
            assert!(
                link.info().contains(&format!("{suite:?}")),
                "{}",
                link.info()
            );
            let data = pattern(300_000);
            let sent = data.clone();
            let server = tokio::spawn(async move {
                let mut req = [0u8; 5];
                server.read_exact(&mut req).await.unwrap();
                assert_eq!(&req, b"hello");
                server.write_all(&sent[..100_000]).await.unwrap();
                if tls13 {
                    // KeyUpdate with update_requested.
                    server.get_mut().1.refresh_traffic_keys().unwrap();
                }
                server.write_all(&sent[100_000..]).await.unwrap();
                server.flush().await.unwrap();
                // Readable only if our answer to the key update was right.
                let mut again = [0u8; 5];
                server.read_exact(&mut again).await.unwrap();
                assert_eq!(&again, b"again");
                server.shutdown().await.unwrap();
            });
            link.write_all(b"hello").await.unwrap();
            let mut got = Vec::new();
            while got.len() < data.len() {
                got.extend_from_slice(&next(&mut link).await.unwrap().unwrap());
            }
            assert!(got == data, "{suite:?}: the plaintext differs");
            assert_eq!(link.owe_key_update, tls13, "{suite:?}");
            link.write_all(b"again").await.unwrap();
            assert!(!link.owe_key_update);
            assert!(next(&mut link).await.unwrap().is_none());
            assert!(link.closed_cleanly(), "{suite:?}");
            server.await.unwrap();
        }
    }

    /// What reading gives after the server, past the handshake, wrote
    /// `bytes` straight to the socket (and closed it, with `close`).
    async fn error_after(bytes: &[u8], close: bool) -> io::Error {
        let suite = CipherSuite::TLS13_AES_128_GCM_SHA256;
        let (mut link, server) = connect(&rustls::version::TLS13, suite).await;
        let (mut raw, _) = server.into_inner();
        raw.write_all(bytes).await.unwrap();
        let _keep = (!close).then_some(raw);
        loop {
            match next(&mut link).await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a bad stream must not look like an end"),
                Err(e) => return e,
            }
        }
    }

    #[tokio::test]
    async fn a_cut_or_forged_stream_is_an_error_or_an_unclean_end() {
        use rustls::version::TLS13;
        let suite = CipherSuite::TLS13_AES_128_GCM_SHA256;

        // The connection ends between records without close_notify: the
        // end is reported, but not as a clean one.
        let (mut link, mut server) = connect(&TLS13, suite).await;
        server.write_all(b"some data").await.unwrap();
        server.flush().await.unwrap();
        drop(server);
        let mut got = Vec::new();
        while let Some(d) = next(&mut link).await.unwrap() {
            got.extend_from_slice(&d);
        }
        assert_eq!(got, b"some data");
        assert!(!link.closed_cleanly());

        // The connection ends inside a record.
        let e = error_after(&[23, 3, 3, 0x40, 0, 1, 2, 3], true).await;
        assert!(e.to_string().contains("inside a TLS record"), "{e}");

        // A record that was not sealed with the session's key.
        let mut forged = vec![23, 3, 3, 0, 64];
        forged.extend(pattern(64));
        let e = error_after(&forged, false).await;
        assert!(e.to_string().contains("integrity"), "{e}");

        // A record larger than TLS allows.
        let e = error_after(&[23, 3, 3, 0xff, 0xff], false).await;
        assert!(e.to_string().contains("larger than TLS allows"), "{e}");
    }

    /// A server that refuses a record it cannot trust hears why: rustls, on
    /// the other end, sees our alert before the connection goes.
    #[tokio::test]
    async fn a_refused_record_is_answered_with_a_fatal_alert() {
        use rustls::AlertDescription::{BadRecordMac, RecordOverflow, UnexpectedMessage};
        use rustls::version::{TLS12, TLS13};
        let mut forged = vec![23, 3, 3, 0, 64];
        forged.extend(pattern(64));
        let mut handshake_outside = vec![22, 3, 3, 0, 64];
        handshake_outside.extend(pattern(64));
        let cases = [
            (&TLS13, &forged, "integrity", BadRecordMac),
            (&TLS12, &forged, "integrity", BadRecordMac),
            (
                &TLS13,
                &vec![23, 3, 3, 0xff, 0xff],
                "larger than TLS",
                RecordOverflow,
            ),
            (
                &TLS13,
                &handshake_outside,
                "unexpected TLS record",
                UnexpectedMessage,
            ),
        ];
        for (version, bytes, says, alert) in cases {
            let suite = if version.version == ProtocolVersion::TLSv1_3 {
                CipherSuite::TLS13_AES_128_GCM_SHA256
            } else {
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            };
            let (mut link, mut server) = testing::loopback(version, suite).await;
            server.get_mut().0.write_all(bytes).await.unwrap();
            let e = next_now(&mut link).await.unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            let again = next_now(&mut link).await;
            assert!(again.is_err(), "a failed link stays failed");
            drop(link);
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf)).await;
            let e = read.expect("an alert, not silence").unwrap_err();
            let got = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            assert_eq!(
                got,
                Some(&rustls::Error::AlertReceived(alert)),
                "{says}: {e}"
            );
        }
    }

    /// A link whose server's records we seal by hand, with the server's
    /// keys in both directions, over loopback TCP.
    async fn hand_sealed(
        version: &'static SupportedProtocolVersion,
        suite: CipherSuite,
    ) -> (TlsLink, tokio::net::TcpStream, Protection, Protection) {
        let (server_cfg, client_cfg) = configs(version, suite);
        let mut server_cfg = (*server_cfg).clone();
        server_cfg.enable_secret_extraction = true;
        let (link, server) = testing::loopback_with(Arc::new(server_cfg), client_cfg).await;
        let (tcp, conn) = server.into_inner();
        let secrets = conn.dangerous_extract_secrets().unwrap();
        let v = link.version;
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let tx = Protection::new(v, tx_seq, tx).unwrap();
        let rx = Protection::new(v, rx_seq, rx).unwrap();
        (link, tcp, tx, rx)
    }

    /// Reads one record from `tcp` and opens it: (content type, plaintext).
    async fn server_reads(tcp: &mut tokio::net::TcpStream, rx: &mut Protection) -> (u8, Vec<u8>) {
        let mut header = [0u8; HEADER];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut header));
        read.await.expect("a record, not silence").unwrap();
        let mut body = vec![0u8; u16::from_be_bytes([header[3], header[4]]) as usize];
        tcp.read_exact(&mut body).await.unwrap();
        let o = rx.open(header, &mut body).unwrap();
        (o.content_type, body[o.start..o.start + o.len].to_vec())
    }

    /// RFC 8446 section 5.1: a KeyUpdate must end its record (what follows
    /// it was sealed under the old key), and a handshake message split
    /// over records has no other record between its pieces. Both are
    /// refused with unexpected_message.
    #[tokio::test]
    async fn handshake_messages_must_not_span_a_key_change_or_be_interleaved() {
        let suite = CipherSuite::TLS13_AES_128_GCM_SHA256;
        let key_update_then_more: &[(u8, &[u8])] = &[(
            HANDSHAKE,
            &[KEY_UPDATE, 0, 0, 1, 0, NEW_SESSION_TICKET, 0, 0, 0],
        )];
        let data_inside_a_message: &[(u8, &[u8])] = &[
            (HANDSHAKE, &[NEW_SESSION_TICKET, 0, 0, 10, 1, 2]),
            (APPLICATION_DATA, b"hi"),
        ];
        for (records, says) in [
            (key_update_then_more, "did not end its record"),
            (data_inside_a_message, "between the pieces"),
        ] {
            let (mut link, mut tcp, mut tx, mut rx) =
                hand_sealed(&rustls::version::TLS13, suite).await;
            let mut out = Vec::new();
            for (kind, data) in records {
                tx.seal(*kind, data, &mut out).unwrap();
            }
            tcp.write_all(&out).await.unwrap();
            let e = match next_now(&mut link).await {
                Ok(Some(d)) => panic!("{says}: data {d:?} was let through"),
                Ok(None) => panic!("{says}: taken for an end"),
                Err(e) => e,
            };
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(
                server_reads(&mut tcp, &mut rx).await,
                (ALERT, vec![2, UNEXPECTED_MESSAGE]),
                "{says}"
            );
        }
    }

    /// TLS 1.2 records carry the negotiated version, which is not part of
    /// what the tag protects in our reading: a record claiming another
    /// version is refused rather than opened.
    #[tokio::test]
    async fn a_tls12_record_of_another_version_is_refused() {
        let suite = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        let (mut link, mut tcp, mut tx, mut rx) = hand_sealed(&rustls::version::TLS12, suite).await;
        let mut out = Vec::new();
        tx.seal(APPLICATION_DATA, b"hello", &mut out).unwrap();
        out[2] = 1;
        tcp.write_all(&out).await.unwrap();
        let e = next_now(&mut link).await.unwrap_err();
        assert!(e.to_string().contains("version 3.1"), "{e}");
        assert_eq!(
            server_reads(&mut tcp, &mut rx).await,
            (ALERT, vec![2, UNEXPECTED_MESSAGE])
        );
    }

    /// A server that writes application data right behind its last
    /// handshake flight, in one write, so that both come in one read: the
    /// data is ours to open, not rustls's (which once failed the handshake
    /// on a state it had no use for).
    #[tokio::test]
    async fn records_in_the_same_read_as_the_handshake_end_are_read() {
        use std::io::Write;
        use tokio::net::{TcpListener, TcpStream};
        let suite = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        let (server_cfg, client_cfg) = configs(&rustls::version::TLS12, suite);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut conn = rustls::ServerConnection::new(server_cfg).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while conn.is_handshaking() {
                let n = tcp.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                conn.read_tls(&mut &buf[..n]).unwrap();
                conn.process_new_packets().unwrap();
                if !conn.is_handshaking() {
                    conn.writer().write_all(b"early words").unwrap();
                    conn.send_close_notify();
                }
                let mut out = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut out).unwrap();
                }
                tcp.write_all(&out).await.unwrap();
            }
            let _ = tcp.read(&mut buf).await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut link = TlsLink::handshake(Box::new(tcp), client_cfg, name)
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(d) = next_now(&mut link).await.unwrap() {
            got.extend_from_slice(&d);
        }
        assert_eq!(got, b"early words");
        assert!(link.closed_cleanly());
        drop(link);
        server.await.unwrap();
    }
}
