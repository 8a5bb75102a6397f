//! The properties the fuzz targets check, shared with the regression test
//! that replays saved inputs in the normal test suite
//! (tests/it/fuzz_regressions.rs), so both check exactly the same thing.

#![allow(dead_code)]

use hfd::hub::Endpoint;
use hfd::hub::api::{next_link, parse_info, parse_tree_page};
use hfd::hub::state::safe_relative;
use hfd::net::http::{
    ContentRange, any_etag, content_length, content_range, last_modified, parse_content_range,
    ratelimit_reset, retry_after, strong_etag,
};
use hfd::net::proxy::{NoProxy, Proxy, ProxyKind};
use hfd::storage::control_file::{decode_slot, encode_slot};

/// Damage is rejected without a panic; what is accepted round-trips.
pub fn control_file(data: &[u8]) {
    if let Ok((generation, state)) = decode_slot(data) {
        assert!(state.done.end() <= state.total);
        let again = encode_slot(&state, generation);
        let (g2, s2) = decode_slot(&again).expect("a re-encoded slot decodes");
        assert_eq!(g2, generation);
        assert_eq!(s2, state);
    }
}

/// Response-header parsers accept anything a server sends.
pub fn http_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(ContentRange::Bytes { first, last, total }) = parse_content_range(&text) {
        assert!(first <= last);
        if let Some(t) = total {
            assert!(last < t);
        }
    }
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = http::HeaderMap::new();
    for name in [
        "content-range",
        "content-length",
        "etag",
        "last-modified",
        "retry-after",
        "ratelimit",
    ] {
        h.insert(name, value.clone());
    }
    let _ = content_range(&h);
    let _ = content_length(&h);
    let _ = strong_etag(&h);
    let _ = any_etag(&h);
    let _ = last_modified(&h);
    if let Some(d) = retry_after(&h) {
        assert!(d.as_secs() <= 600);
    }
    if let Some(d) = ratelimit_reset(&h) {
        assert!(d.as_secs() <= 600);
    }
}

/// aria2c input files come from users and other programs.
pub fn input_file(data: &[u8]) {
    for e in hfd::cli::input_file::Entries::new(data)
        .take(10_000)
        .flatten()
    {
        assert!(e.line > 0);
    }
}

/// Proxy URLs and NO_PROXY lists come from the environment; a proxy's shown
/// form has a fixed shape, so its credentials can never be in it.
pub fn proxy_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = Proxy::parse(&text) {
        let scheme = match p.kind {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        };
        // Credentials (user names too: some services put a token there) are
        // never shown.
        let want = match &p.auth {
            Some(_) => format!("{scheme}://***@{}", p.authority()),
            None => format!("{scheme}://{}", p.authority()),
        };
        assert_eq!(p.to_string(), want);
    }
    if let Ok(np) = NoProxy::parse(&text) {
        let _ = np.matches("example.com", 443);
        let _ = np.matches("127.0.0.1", 80);
        let _ = np.matches("::1", 80);
    }
}

/// What the Hub (or a mirror, or whoever answers at HF_ENDPOINT) sends:
/// repo info, tree pages, `Link` headers and the file names in them. Nothing
/// panics; every name the path check accepts stays inside the local dir; a
/// next-page link is only ever followed on the endpoint's own origin.
pub fn hub_json(data: &[u8]) {
    if let Ok(info) = parse_info(bytes::Bytes::copy_from_slice(data)) {
        assert!(info.siblings.len() <= hfd::hub::api::MAX_FILES);
        for f in &info.siblings {
            repo_path(&f.path);
        }
    }
    if let Ok((files, entries)) = parse_tree_page(data) {
        assert!(files.len() <= entries);
        for f in &files {
            repo_path(&f.path);
        }
    }
    repo_path(&String::from_utf8_lossy(data));
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::LINK, value);
        for ep in ["https://hub.example", "http://127.0.0.1:8080/mirror/"] {
            let ep = Endpoint::parse(ep).expect("a valid endpoint");
            let page = ep.url().join("api/models/a/b/tree/main").expect("joins");
            if let Some(next) = next_link(&h, &page)
                && let Ok(url) = ep.rebase(&next)
            {
                assert_eq!(
                    url.origin(),
                    ep.url().origin(),
                    "{next} was moved to {url}, off the endpoint"
                );
            }
        }
    }
}

/// A repo path the check accepts is a plain relative path below the
/// local dir and outside hfd's own `.hfd/`.
fn repo_path(p: &str) {
    use std::path::{Component, Path};
    if let Ok(rel) = safe_relative(p) {
        assert!(!p.contains('\0'));
        assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        let root = Path::new("/local/dir");
        let full = root.join(&rel);
        assert!(full.starts_with(root) && full != root);
        assert!(!full.starts_with(root.join(".hfd")));
    }
}

/// Our own HTTP/1.1 response reader (`hfd::net::h1`, as the plain client
/// drives it): arbitrary bytes as a server's answer, cut into reads at
/// arbitrary points. The first byte chooses the cuts and whether the
/// stream ends cleanly. No panic; how the bytes are cut never changes what
/// is accepted nor what the body is; httparse runs at most once per line
/// end received (no quadratic re-parsing of a head trickling in); a
/// Content-Length body has exactly that length.
pub fn http_response(data: &[u8]) {
    use hfd::net::h1::{Framing, decode};
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let clean = control & 0x80 != 0;
    let mut whole_runs = 0;
    let whole = decode(&[stream], clean, &mut whole_runs);
    let pieces = cut(stream, control & 0x7f);
    let mut cut_runs = 0;
    let in_pieces = decode(&pieces, clean, &mut cut_runs);
    match (&whole, &in_pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "cutting the stream changed the response"),
        (Err(_), Err(_)) => {}
        _ => panic!("cutting the stream changed the outcome: {whole:?} / {in_pieces:?}"),
    }
    let line_ends = stream.iter().filter(|&&b| b == b'\n').count();
    assert!(
        whole_runs <= line_ends && cut_runs <= line_ends,
        "{cut_runs} parses for {line_ends} line ends"
    );
    if let Ok(r) = &whole
        && let Framing::Length(n) = r.framing
    {
        assert_eq!(r.body.len() as u64, n);
    }
}

/// `stream` cut into pieces whose sizes follow from `seed`: 0 gives single
/// bytes, others a repeating pattern of sizes from 1 to a few hundred.
fn cut(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(seed) | 0x100;
    while !rest.is_empty() {
        let size = if seed == 0 {
            1
        } else {
            // xorshift: a cheap, deterministic spread of sizes.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % (4 * u32::from(seed) + 1)) as usize
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// Our own TLS records (`TlsLink`) against rustls's reading of the same
/// bytes. See `tls_peer` for how the records are made.
///
/// Input: byte 0 picks the version and cipher suite and the read size,
/// byte 1 the server's script (data of several sizes, session tickets, key
/// updates, close_notify or a bare end), and the rest is a list of edits of
/// three bytes each — cut the stream into reads at an offset, flip bits,
/// cut it short, delete or insert a byte — applied to the records after
/// the handshake (the handshake itself is only cut, never changed).
///
/// The same bytes, in the same reads, go to our client and to a rustls
/// `ClientConnection` holding the same session: both handshakes are made
/// deterministic (fixed randomness and key shares), so both derive the keys
/// the records were sealed with. Checked:
/// - we never hand on a byte that rustls would not: our plaintext is a
///   prefix of rustls's (we may stop earlier: we refuse some things rustls
///   tolerates, e.g. TLS 1.2 warning alerts);
/// - a clean end (close_notify) on our side is one on rustls's side too,
///   with the same plaintext;
/// - with no edit, only cuts, both read everything and end alike;
/// - a record we refuse is answered with exactly one alert record, and an
///   end the server caused (its alert, a cut record) with none.
pub fn tls_records(data: &[u8]) {
    tls_peer::check(data);
}

mod tls_peer {
    use std::collections::HashMap;
    use std::future::Future;
    use std::io::{self, Read};
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{
        ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
        SupportedKxGroup,
    };
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::{CertifiedKey, Signer, SigningKey};
    use rustls::{
        CipherSuite, ClientConfig, ClientConnection, DigitallySignedStruct, NamedGroup,
        ServerConfig, ServerConnection, SignatureAlgorithm, SignatureScheme,
        SupportedProtocolVersion,
    };

    const SUITES: [(CipherSuite, bool); 5] = [
        (CipherSuite::TLS13_AES_128_GCM_SHA256, true),
        (CipherSuite::TLS13_AES_256_GCM_SHA384, true),
        (CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, true),
        (CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false),
        (
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            false,
        ),
    ];
    const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

    /// The same "random" bytes every time, so that every handshake of a
    /// configuration is the same handshake.
    #[derive(Debug)]
    struct FixedRandom;
    impl SecureRandom for FixedRandom {
        fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
            buf.fill(0x5a);
            Ok(())
        }
    }

    /// A key exchange that always agrees on the same secret: the traffic
    /// keys still come from rustls's real key schedule over the real
    /// transcript, only the Diffie-Hellman step is skipped.
    #[derive(Debug)]
    struct FixedKx;
    impl SupportedKxGroup for FixedKx {
        fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
            Ok(Box::new(FixedShare))
        }
        fn name(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }
    struct FixedShare;
    impl ActiveKeyExchange for FixedShare {
        fn complete(self: Box<Self>, _peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
            Ok(SharedSecret::from(&[0x42u8; 32][..]))
        }
        fn pub_key(&self) -> &[u8] {
            &[0x24; 32]
        }
        fn group(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }
    static FIXED_KX: FixedKx = FixedKx;
    static FIXED_RANDOM: FixedRandom = FixedRandom;

    /// Signatures that are never checked (the client trusts anything).
    #[derive(Debug)]
    struct AnyKey;
    impl SigningKey for AnyKey {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            offered
                .contains(&SCHEME)
                .then(|| Box::new(AnyKey) as Box<dyn Signer>)
        }
        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::ECDSA
        }
    }
    impl Signer for AnyKey {
        fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            Ok(vec![1; 64])
        }
        fn scheme(&self) -> SignatureScheme {
            SCHEME
        }
    }
    #[derive(Debug)]
    struct OneCert(Arc<CertifiedKey>);
    impl ResolvesServerCert for OneCert {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    #[derive(Debug)]
    struct TrustAll;
    impl ServerCertVerifier for TrustAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SCHEME]
        }
    }

    fn provider(suite: CipherSuite) -> Arc<CryptoProvider> {
        let mut p = rustls::crypto::ring::default_provider();
        p.cipher_suites.retain(|s| s.suite() == suite);
        p.kx_groups = vec![&FIXED_KX];
        p.secure_random = &FIXED_RANDOM;
        Arc::new(p)
    }

    fn version(tls13: bool) -> &'static SupportedProtocolVersion {
        if tls13 {
            &rustls::version::TLS13
        } else {
            &rustls::version::TLS12
        }
    }

    fn client_config(suite: CipherSuite, tls13: bool) -> Arc<ClientConfig> {
        let mut c = ClientConfig::builder_with_provider(provider(suite))
            .with_protocol_versions(&[version(tls13)])
            .expect("the suite fits the version")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll))
            .with_no_client_auth();
        c.resumption = rustls::client::Resumption::disabled();
        c.enable_secret_extraction = true;
        Arc::new(c)
    }

    fn server_config(suite: CipherSuite, tls13: bool, tickets: usize) -> Arc<ServerConfig> {
        let cert = CertifiedKey::new(vec![CertificateDer::from(vec![0x30, 0])], Arc::new(AnyKey));
        let mut s = ServerConfig::builder_with_provider(provider(suite))
            .with_protocol_versions(&[version(tls13)])
            .expect("the suite fits the version")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(Arc::new(cert))));
        s.send_tls13_tickets = tickets;
        Arc::new(s)
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from("fuzz.test").expect("a valid name")
    }

    /// What a rustls server sends for one configuration and script.
    struct Stream {
        client: Arc<ClientConfig>,
        bytes: Vec<u8>,
        /// Where the handshake ends and the records under test begin.
        handshake: usize,
        /// What the client writes during the handshake.
        client_handshake: usize,
        plain: Vec<u8>,
        close_notify: bool,
        /// An alert record's size with this suite.
        alert_len: usize,
    }

    /// The server's script: application data in several writes (one
    /// record each, or more past 16 KiB), key updates, close_notify.
    fn script(server: &mut ServerConnection, kind: u8, tls13: bool) -> (Vec<u8>, bool) {
        use std::io::Write;
        let sizes: &[usize] = match kind % 4 {
            0 => &[5],
            1 => &[1, 100, 2000],
            2 => &[0, 16384 + 1],
            _ => &[300, 1, 300],
        };
        let mut plain = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            server.writer().write_all(&data).expect("buffered");
            plain.extend_from_slice(&data);
            if tls13 && kind & 4 != 0 {
                server.refresh_traffic_keys().expect("a key update");
            }
        }
        let close_notify = kind & 8 == 0;
        if close_notify {
            server.send_close_notify();
        }
        (plain, close_notify)
    }

    fn make_stream(suite: usize, kind: u8) -> Stream {
        let (suite, tls13) = SUITES[suite];
        let client = client_config(suite, tls13);
        let tickets = usize::from(kind >> 4) % 3;
        let mut c = ClientConnection::new(client.clone(), name()).expect("client");
        let mut s = ServerConnection::new(server_config(suite, tls13, tickets)).expect("server");
        let mut bytes = Vec::new();
        let mut handshake = None;
        for _ in 0..20 {
            let mut up = Vec::new();
            c.write_tls(&mut up).expect("to memory");
            s.read_tls(&mut &up[..]).expect("from memory");
            s.process_new_packets().expect("a good handshake");
            let mut down = Vec::new();
            s.write_tls(&mut down).expect("to memory");
            c.read_tls(&mut &down[..]).expect("from memory");
            c.process_new_packets().expect("a good handshake");
            bytes.extend_from_slice(&down);
            if handshake.is_none() && !c.is_handshaking() {
                handshake = Some(bytes.len());
            }
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
                break;
            }
        }
        let handshake = handshake.expect("the handshake completes");
        let (plain, close_notify) = script(&mut s, kind, tls13);
        while s.wants_write() {
            s.write_tls(&mut bytes).expect("to memory");
        }
        let alert_len = match (tls13, suite) {
            (true, _) => 5 + 2 + 1 + 16,
            (false, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) => 5 + 8 + 2 + 16,
            (false, _) => 5 + 2 + 16,
        };
        let mut stream = Stream {
            client,
            bytes,
            handshake,
            client_handshake: 0,
            plain,
            close_notify,
            alert_len,
        };
        // What our client writes in a handshake, from an unchanged run.
        let written = Arc::new(Mutex::new(Vec::new()));
        let _ = ours(
            &stream,
            vec![stream.bytes.clone()],
            16 << 10,
            written.clone(),
        );
        stream.client_handshake = written.lock().expect("not poisoned").len();
        stream
    }

    /// Reads handed out piece by piece, writes kept.
    struct Scripted {
        pieces: std::collections::VecDeque<Vec<u8>>,
        written: Arc<Mutex<Vec<u8>>>,
    }
    impl tokio::io::AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.pieces.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    piece.drain(..n);
                    self.pieces.push_front(piece);
                }
            }
            Poll::Ready(Ok(()))
        }
    }
    impl tokio::io::AsyncWrite for Scripted {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written
                .lock()
                .expect("not poisoned")
                .extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// How a reading ended.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        CloseNotify,
        /// The stream ended without close_notify.
        Cut,
        Error(String),
    }

    /// Our client's reading of `pieces`. Nothing here ever waits (the
    /// reads are all there), so one poll finishes it.
    fn ours(
        stream: &Stream,
        pieces: Vec<Vec<u8>>,
        read_size: usize,
        written: Arc<Mutex<Vec<u8>>>,
    ) -> (Vec<u8>, End) {
        let io = Scripted {
            pieces: pieces.into(),
            written,
        };
        let run = hfd::net::read_through_own_tls(io, stream.client.clone(), name(), read_size);
        let mut run = std::pin::pin!(run);
        let Poll::Ready(result) = run.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("our client waited on a stream that never blocks");
        };
        let (plain, end) = result.expect("the handshake is never changed");
        let end = match end {
            Ok(true) => End::CloseNotify,
            Ok(false) => End::Cut,
            Err(e) => End::Error(e.to_string()),
        };
        (plain, end)
    }

    /// rustls's reading of the same pieces.
    fn theirs(stream: &Stream, pieces: &[Vec<u8>]) -> (Vec<u8>, End) {
        let mut c = ClientConnection::new(stream.client.clone(), name()).expect("client");
        let mut plain = Vec::new();
        'feed: for piece in pieces {
            let mut rd = &piece[..];
            while !rd.is_empty() {
                let step = c.read_tls(&mut rd).map_err(|e| e.to_string());
                let step = step.and_then(|n| {
                    c.process_new_packets()
                        .map(|_| n)
                        .map_err(|e| e.to_string())
                });
                drain(&mut c, &mut plain);
                match step {
                    Err(e) => return (plain, End::Error(e)),
                    // After close_notify rustls reads nothing more (and
                    // neither do we).
                    Ok(0) => break 'feed,
                    Ok(_) => {}
                }
            }
        }
        let _ = c.read_tls(&mut &[][..]);
        if let Err(e) = c.process_new_packets() {
            drain(&mut c, &mut plain);
            return (plain, End::Error(e.to_string()));
        }
        drain(&mut c, &mut plain);
        let end = match c.reader().read(&mut [0u8; 1]) {
            Ok(0) => End::CloseNotify,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => End::Cut,
            other => End::Error(format!("{other:?}")),
        };
        (plain, end)
    }

    fn drain(c: &mut ClientConnection, plain: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&buf[..n]);
        }
    }

    /// The stream after `edits`, cut into reads; whether any edit changed it.
    fn edit(stream: &Stream, edits: &[u8]) -> (Vec<Vec<u8>>, bool) {
        let mut bytes = stream.bytes.clone();
        let mut cuts = Vec::new();
        let mut changed = false;
        for e in edits.chunks_exact(3) {
            let at = usize::from(u16::from_be_bytes([e[1], e[2]]));
            let tail = bytes.len() - stream.handshake;
            match e[0] % 8 {
                // Cuts anywhere, the handshake too; most edits are cuts.
                0..=3 => cuts.push(at % (bytes.len() + 1)),
                _ if tail == 0 => {}
                4 => {
                    bytes[stream.handshake + at % tail] ^= e[0] | 1;
                    changed = true;
                }
                5 => {
                    bytes.truncate(stream.handshake + at % tail);
                    changed = true;
                }
                6 => {
                    bytes.remove(stream.handshake + at % tail);
                    changed = true;
                }
                _ => {
                    bytes.insert(stream.handshake + at % (tail + 1), e[0]);
                    changed = true;
                }
            }
        }
        cuts.retain(|&c| c > 0 && c < bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            pieces.push(bytes[from..c].to_vec());
            from = c;
        }
        (pieces, changed)
    }

    thread_local! {
        static STREAMS: std::cell::RefCell<HashMap<(usize, u8), Arc<Stream>>> =
            std::cell::RefCell::new(HashMap::new());
    }

    fn stream_for(suite: usize, kind: u8) -> Arc<Stream> {
        STREAMS.with(|s| {
            s.borrow_mut()
                .entry((suite, kind))
                .or_insert_with(|| Arc::new(make_stream(suite, kind)))
                .clone()
        })
    }

    pub fn check(data: &[u8]) {
        let [choice, kind, edits @ ..] = data else {
            return;
        };
        let suite = usize::from(choice % 5);
        let read_size = [1usize, 5, 100, 16 << 10, 64 << 10][usize::from(choice / 5 % 5)];
        // Key updates exist in TLS 1.3 only; the kind's unused bits are masked
        // so that equal scripts share one stream.
        let kind = kind & 0x3f;
        let stream = stream_for(suite, kind);
        let edits = &edits[..edits.len().min(3 * 64)];
        let (pieces, changed) = edit(&stream, edits);
        let written = Arc::new(Mutex::new(Vec::new()));
        let (our_plain, our_end) = ours(&stream, pieces.clone(), read_size, written.clone());
        let (their_plain, their_end) = theirs(&stream, &pieces);
        let ctx = || {
            format!(
                "ours {our_end:?} ({} bytes), rustls {their_end:?} ({} bytes)",
                our_plain.len(),
                their_plain.len()
            )
        };
        assert!(
            their_plain.starts_with(&our_plain),
            "we handed on bytes rustls did not: {}",
            ctx()
        );
        if our_end == End::CloseNotify {
            assert_eq!(their_end, End::CloseNotify, "{}", ctx());
            assert!(our_plain == their_plain, "{}", ctx());
        }
        if !changed {
            let want = if stream.close_notify {
                End::CloseNotify
            } else {
                End::Cut
            };
            assert_eq!(our_end, want, "{}", ctx());
            assert_eq!(their_end, want, "{}", ctx());
            assert!(
                our_plain == stream.plain && their_plain == stream.plain,
                "{}",
                ctx()
            );
        }
        let sent = written.lock().expect("not poisoned").len() - stream.client_handshake;
        match &our_end {
            End::Error(e) if e.contains("sent TLS alert") || e.contains("inside a TLS record") => {
                assert_eq!(sent, 0, "an alert to a server that ended it: {e}");
            }
            End::Error(e) => assert_eq!(sent, stream.alert_len, "one alert for: {e}"),
            _ => assert_eq!(sent, 0, "nothing is written after the handshake"),
        }
    }
}

/// Xet: a xorb range decodes to chunks of at most 128 KiB, never more than
/// asked, and all of them when it says it is complete; a reconstruction
/// answer (v1 or v2) either is refused or plans units whose writes stay
/// inside the range asked, also when fed these bytes as their xorb data.
pub fn xet(data: &[u8]) {
    use hfd::xet::chunk::{ChunkStream, MAX_CHUNK};
    use hfd::xet::recon::{Plan, ReconstructionV1, ReconstructionV2, UnitDecoder};
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = u32::from(head % 8) + 1;
    let piece = usize::from(head / 8) + 1;
    let mut s = ChunkStream::new(3..3 + n);
    let mut out = Vec::new();
    let mut ok = true;
    for p in rest.chunks(piece) {
        if s.push(p, &mut out).is_err() {
            ok = false;
            break;
        }
    }
    assert!(out.len() as u32 <= n);
    assert!(out.iter().all(|c| c.data.len() <= MAX_CHUNK));
    if ok && s.finish().is_ok() {
        assert_eq!(out.len() as u32, n);
    }
    let v1 = serde_json::from_slice::<ReconstructionV1>(rest)
        .ok()
        .or_else(|| {
            serde_json::from_slice::<ReconstructionV2>(rest)
                .ok()
                .map(ReconstructionV1::from)
        });
    let Some(r) = v1 else { return };
    let total = r
        .terms
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.unpacked_length))
        .saturating_sub(r.offset_into_first_range);
    let end = total.min(u64::from(head) * 1000);
    let want = end / 3..end;
    let Ok(plan) = Plan::build(r, want.clone()) else {
        return;
    };
    for u in plan.units.iter().take(8) {
        for w in u.writes(&want) {
            assert!(want.start <= w.start && w.end <= want.end);
        }
        let mut d = UnitDecoder::new(u, want.clone());
        let mut writes = Vec::new();
        if d.push(rest, &mut writes).is_ok() {
            for (at, b) in &writes {
                assert!(want.start <= *at && at + b.len() as u64 <= want.end);
            }
        }
    }
}
