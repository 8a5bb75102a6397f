//! Which proxy, if any, a request to a given host goes through.
//!
//! Our users' tools disagree on proxy variables (aria2c and wget read only
//! lowercase ones, curl ignores uppercase `HTTP_PROXY`, reqwest prefers
//! uppercase), and a redirect to a storage host that silently goes direct is
//! the classic failure. So the decision here is made once per *target host*,
//! for every request alike (API call, redirect hop, segment), from one
//! precedence table (docs/proxy.md):
//!
//! 1. `--https-proxy` / `--http-proxy` for the target's scheme;
//! 2. `--all-proxy`;
//! 3. `https_proxy`, then `HTTPS_PROXY` (or `http_proxy`, then `HTTP_PROXY`);
//! 4. `all_proxy`, then `ALL_PROXY`;
//!
//! where steps 3 and 4 apply only when no proxy flag was given at all (a
//! user who names a proxy on the command line means that one, unlike
//! aria2c, where an exported `https_proxy` still beats `--all-proxy`),
//! and `--no-proxy`, else `no_proxy`, else `NO_PROXY`, exempts hosts. An empty
//! value counts as unset; an empty flag (`--all-proxy=`) turns the
//! environment's proxies off. When both spellings of a variable are set and
//! differ, the lowercase one wins and we say so once.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use url::Url;

/// The protocol spoken to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// Plain HTTP proxy: `CONNECT` for https targets, absolute-form requests for http targets.
    Http,
    /// HTTP proxy reached over TLS (the proxy's own certificate is checked).
    Https,
    /// SOCKS5; target names are resolved locally.
    Socks5,
    /// SOCKS5; target names are resolved by the proxy (best behind polluted DNS).
    Socks5h,
}

/// One proxy server.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// User name and password, percent-decoded.
    pub auth: Option<(String, String)>,
}

impl Proxy {
    /// Parses `[scheme://][user[:password]@]host[:port]`; no scheme means `http`.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let t = text.trim();
        let with_scheme = if t.contains("://") {
            t.to_string()
        } else {
            format!("http://{t}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| format!("invalid proxy {}: {e}", redact_text(t)))?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(format!(
                    "unsupported proxy scheme {other:?} in {}: use http://, https://, socks5:// or socks5h://",
                    redact_text(t)
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("invalid proxy {}: no host", redact_text(t)))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(match kind {
            ProxyKind::Http => 80,
            ProxyKind::Https => 443,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        });
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let dec = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            Some((dec(url.username()), dec(url.password().unwrap_or(""))))
        };
        Ok(Proxy {
            kind,
            host,
            port,
            auth,
        })
    }

    fn scheme(&self) -> &'static str {
        match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }

    /// `host:port` for connecting, with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Shown with the user name and password replaced by `***`, so proxies can
/// appear in messages and logs. The user name goes too: some proxy services
/// put an access token there.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if self.auth.is_some() {
            f.write_str("***@")?;
        }
        write!(f, "{}", self.authority())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the `user:password@` of a proxy URL in free text by `***@`
/// (for values that did not parse, so `Proxy`'s own redaction cannot apply).
pub fn redact_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    // The authority ends at the first '/', '?' or '#' after the scheme; a
    // password may itself contain '@', so the last '@' before that counts.
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
}

/// How to reach one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    Via(Arc<Proxy>),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct => f.write_str("direct"),
            Route::Via(p) => write!(f, "via {p}"),
        }
    }
}

/// Proxy choices given on the command line (aria2c's option names).
/// `Some("")` means "explicitly none".
#[derive(Clone, Default)]
pub struct ProxyFlags {
    pub all: Option<String>,
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Option<String>,
}

/// Written by hand so that credentials in the flags never reach a log.
impl fmt::Debug for ProxyFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |v: &Option<String>| v.as_deref().map(redact_text);
        f.debug_struct("ProxyFlags")
            .field("all", &r(&self.all))
            .field("http", &r(&self.http))
            .field("https", &r(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// A chosen proxy and the flag or variable it came from (for `-v`).
#[derive(Clone, Debug)]
struct Chosen {
    proxy: Arc<Proxy>,
    source: &'static str,
}

/// The resolved proxy configuration.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    http: Option<Chosen>,
    https: Option<Chosen>,
    no_proxy: NoProxy,
    no_proxy_source: Option<&'static str>,
    /// Lines worth telling the user once, at the default verbosity: which
    /// spelling of a variable won, which variable or entry was ignored.
    pub notes: Vec<String>,
}

/// The environment's value for a pair of spellings, or `None`; `notes`
/// learns when both are set and differ, and which one is used.
fn env_pair(
    env: &impl Fn(&str) -> Option<String>,
    lower: &'static str,
    upper: &'static str,
    notes: &mut Vec<String>,
    redact: bool,
) -> Option<(String, &'static str)> {
    let get = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut u = get(upper);
    // httpoxy: under CGI, a request header `Proxy:` arrives as HTTP_PROXY.
    if upper == "HTTP_PROXY" && u.is_some() && get("REQUEST_METHOD").is_some() {
        notes.push(
            "ignoring HTTP_PROXY because REQUEST_METHOD is set (under CGI it can come from a request header); use http_proxy".into(),
        );
        u = None;
    }
    match (get(lower), u) {
        (Some(l), Some(u)) => {
            if l != u {
                let shown = if redact { redact_text(&l) } else { l.clone() };
                notes.push(format!(
                    "both {lower} and {upper} are set and differ; using {lower}={shown}"
                ));
            }
            Some((l, lower))
        }
        (Some(l), None) => Some((l, lower)),
        (None, Some(u)) => Some((u, upper)),
        (None, None) => None,
    }
}

impl ProxySettings {
    /// No proxy at all.
    pub fn direct() -> Self {
        Self::default()
    }

    /// Settings from flags and the process environment.
    pub fn from_env(flags: &ProxyFlags) -> Result<Self, String> {
        Self::resolve(flags, |k| std::env::var(k).ok())
    }

    /// Settings from flags and an environment lookup (tests pass a map).
    ///
    /// Precedence (docs/proxy.md has the table next to curl's, aria2c's and
    /// reqwest's): if any proxy flag is given, the flags alone decide (a
    /// scheme's own flag, else `--all-proxy`; an empty value means none) and
    /// the proxy variables are not read at all, so `--all-proxy=` switches
    /// them off. Otherwise the scheme's variable, else `all_proxy`; for each,
    /// the lowercase spelling wins over the uppercase one. Empty values count
    /// as unset. `--no-proxy` (even empty) replaces `no_proxy`/`NO_PROXY`.
    pub fn resolve(
        flags: &ProxyFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut notes = Vec::new();
        let parse = |v: &str, source: &'static str| -> Result<Option<Chosen>, String> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            let proxy = Proxy::parse(v).map_err(|e| format!("{e} (from {source})"))?;
            Ok(Some(Chosen {
                proxy: Arc::new(proxy),
                source,
            }))
        };
        let any_flag = flags.all.is_some() || flags.http.is_some() || flags.https.is_some();
        let (http, https) = if any_flag {
            let pick = |own: &Option<String>, own_name: &'static str| match own {
                Some(v) => parse(v, own_name),
                None => parse(flags.all.as_deref().unwrap_or(""), "--all-proxy"),
            };
            (
                pick(&flags.http, "--http-proxy")?,
                pick(&flags.https, "--https-proxy")?,
            )
        } else {
            let all = env_pair(&env, "all_proxy", "ALL_PROXY", &mut notes, true);
            let mut pick = |lower, upper| match env_pair(&env, lower, upper, &mut notes, true) {
                Some((v, source)) => parse(&v, source),
                None => match &all {
                    Some((v, source)) => parse(v, source),
                    None => Ok(None),
                },
            };
            let http = pick("http_proxy", "HTTP_PROXY")?;
            let https = pick("https_proxy", "HTTPS_PROXY")?;
            (http, https)
        };
        // Remarks about NO_PROXY only matter when some proxy is in use.
        let mut no_proxy_notes = Vec::new();
        let (no_proxy, no_proxy_source) = match &flags.no_proxy {
            Some(list) => (NoProxy::parse(list)?, Some("--no-proxy")),
            None => match env_pair(&env, "no_proxy", "NO_PROXY", &mut no_proxy_notes, false) {
                Some((list, source)) => {
                    let (np, bad) = NoProxy::parse_lenient(&list);
                    for e in bad {
                        no_proxy_notes.push(format!(
                            "ignoring {source} entry {e:?}: {}",
                            NoProxy::ENTRY_HELP
                        ));
                    }
                    (np, Some(source))
                }
                None => (NoProxy::default(), None),
            },
        };
        if http.is_some() || https.is_some() {
            notes.append(&mut no_proxy_notes);
        }
        Ok(ProxySettings {
            http,
            https,
            no_proxy,
            no_proxy_source,
            notes,
        })
    }

    /// The route for a request to `url`, decided by the URL's own host and scheme.
    pub fn route_for(&self, url: &Url) -> Route {
        let chosen = match url.scheme() {
            "https" => &self.https,
            _ => &self.http,
        };
        match chosen {
            Some(c) => {
                let host = url.host_str().unwrap_or("");
                let port = url.port_or_known_default().unwrap_or(0);
                if self.no_proxy.matches(host, port) {
                    Route::Direct
                } else {
                    Route::Via(c.proxy.clone())
                }
            }
            None => Route::Direct,
        }
    }

    /// True when no proxy is configured for any scheme.
    pub fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// Tells the user what matters once per run: the notes at the default
    /// verbosity (a variable spelled twice is a classic trap), the choice
    /// per scheme with `-v`. Both binaries call this.
    pub fn announce(&self) {
        for note in &self.notes {
            tracing::warn!("{note}");
        }
        for line in self.describe() {
            tracing::info!("proxy: {line}");
        }
    }

    /// What was chosen and from where, one line per scheme, for `-v`
    /// (credentials redacted).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (scheme, c) in [("http", &self.http), ("https", &self.https)] {
            lines.push(match c {
                Some(c) => format!("{scheme}:// URLs via {} (from {})", c.proxy, c.source),
                None => format!("{scheme}:// URLs: direct (no proxy configured)"),
            });
        }
        if let Some(source) = self.no_proxy_source
            && !self.is_direct()
        {
            lines.push(format!("no proxy for: {} (from {source})", self.no_proxy));
        }
        lines
    }
}

/// A NO_PROXY list with curl's matching rules plus ports and CIDR ranges.
#[derive(Clone, Debug, Default)]
pub struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
    /// The usable entries as given (lowercase), for `-v`.
    text: Vec<String>,
}

impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("(nothing)")
        } else {
            f.write_str(&self.text.join(","))
        }
    }
}

#[derive(Clone, Debug)]
enum NoProxyEntry {
    /// A name: matches itself and its subdomains.
    Domain { name: String, port: Option<u16> },
    /// An address or a CIDR range: matches IP-literal hosts only (no DNS lookup).
    Net {
        addr: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// What an entry may be, for messages.
    pub const ENTRY_HELP: &'static str = "expected a host name (matching its subdomains too), an IP address or a CIDR range such as 192.168.0.0/16, with an optional :port, or *";

    /// Parses a comma-separated list given on the command line: a bad
    /// entry is an error, since the user can fix it right there.
    pub fn parse(list: &str) -> Result<NoProxy, String> {
        let (np, bad) = Self::parse_lenient(list);
        match bad.first() {
            None => Ok(np),
            Some(e) => Err(format!(
                "invalid --no-proxy entry {e:?}: {}",
                Self::ENTRY_HELP
            )),
        }
    }

    /// Parses a list from the environment, returning the entries it could
    /// not use. Environments carry lists written for other tools (`<local>`,
    /// `192.168.*`), and one odd entry must not stop every download.
    pub fn parse_lenient(list: &str) -> (NoProxy, Vec<String>) {
        let mut np = NoProxy::default();
        let mut bad = Vec::new();
        for raw in list.split(',') {
            let e = raw.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            np.text.push(e.clone());
            if e == "*" {
                np.all = true;
                continue;
            }
            match parse_no_proxy_entry(&e) {
                Some(entry) => np.entries.push(entry),
                None => {
                    np.text.pop();
                    bad.push(raw.trim().to_string());
                }
            }
        }
        (np, bad)
    }

    /// True when requests to `host:port` must not use the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.entries.iter().any(|e| match e {
            NoProxyEntry::Domain { name, port: p } => {
                p.is_none_or(|p| p == port)
                    && (host == *name
                        || (host.len() > name.len()
                            && host.ends_with(name.as_str())
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.'))
            }
            NoProxyEntry::Net {
                addr,
                prefix,
                port: p,
            } => p.is_none_or(|p| p == port) && ip.is_some_and(|ip| in_net(ip, *addr, *prefix)),
        })
    }
}

fn parse_no_proxy_entry(e: &str) -> Option<NoProxyEntry> {
    // Split off a port: "[v6]:port", "v4:port", "name:port"; a bare v6 has several colons.
    let (body, port) = if let Some(rest) = e.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (&rest[..close], port)
    } else if e.matches(':').count() == 1 {
        let (b, p) = e.split_once(':')?;
        (b, Some(p.parse().ok()?))
    } else {
        (e, None)
    };
    if let Some((a, bits)) = body.split_once('/') {
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = bits.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        return Some(NoProxyEntry::Net { addr, prefix, port });
    }
    if let Ok(addr) = body.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Some(NoProxyEntry::Net { addr, prefix, port });
    }
    let name = body.trim_start_matches("*.").trim_start_matches('.');
    let name = name.trim_end_matches('.');
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return None;
    }
    Some(NoProxyEntry::Domain {
        name: name.to_string(),
        port,
    })
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a4| in_net(IpAddr::V4(a4), net, prefix)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn try_settings(flags: &ProxyFlags, env: &[(&str, &str)]) -> Result<ProxySettings, String> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxySettings::resolve(flags, |k| map.get(k).cloned())
    }

    fn settings(flags: &ProxyFlags, env: &[(&str, &str)]) -> ProxySettings {
        try_settings(flags, env).unwrap()
    }

    fn route(s: &ProxySettings, url: &str) -> String {
        s.route_for(&Url::parse(url).unwrap()).to_string()
    }

    fn no_flags() -> ProxyFlags {
        ProxyFlags::default()
    }

    #[test]
    fn each_variable_alone_applies_to_its_scheme() {
        for (var, http, https) in [
            ("http_proxy", true, false),
            ("HTTP_PROXY", true, false),
            ("https_proxy", false, true),
            ("HTTPS_PROXY", false, true),
            ("all_proxy", true, true),
            ("ALL_PROXY", true, true),
        ] {
            let s = settings(&no_flags(), &[(var, "127.0.0.1:7890")]);
            let via = "via http://127.0.0.1:7890";
            assert_eq!(route(&s, "http://h/x") == via, http, "{var} http");
            assert_eq!(route(&s, "https://h/x") == via, https, "{var} https");
            assert!(s.notes.is_empty(), "{var}: {:?}", s.notes);
            let described = s.describe().join("\n");
            assert!(described.contains(&format!("(from {var})")), "{described}");
        }
    }

    #[test]
    fn specific_variable_beats_all_proxy() {
        let s = settings(
            &no_flags(),
            &[
                ("ALL_PROXY", "socks5h://a:1"),
                ("https_proxy", "http://b:2"),
            ],
        );
        assert_eq!(route(&s, "https://h/"), "via http://b:2");
        assert_eq!(route(&s, "http://h/"), "via socks5h://a:1");
    }

    #[test]
    fn lowercase_wins_and_is_noted_once_with_the_password_hidden() {
        let s = settings(
            &no_flags(),
            &[
                ("https_proxy", "socks5h://me:pw@a:1"),
                ("HTTPS_PROXY", "http://b:2"),
            ],
        );
        assert_eq!(route(&s, "https://h/"), "via socks5h://***@a:1");
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert_eq!(
            s.notes[0],
            "both https_proxy and HTTPS_PROXY are set and differ; using https_proxy=socks5h://***@a:1"
        );
        // Equal values (up to surrounding blanks) are not worth a line.
        let same = settings(
            &no_flags(),
            &[
                ("https_proxy", "http://b:2 "),
                ("HTTPS_PROXY", "http://b:2"),
            ],
        );
        assert!(same.notes.is_empty());
        let s = settings(
            &no_flags(),
            &[("all_proxy", "http://a:1"), ("ALL_PROXY", "http://b:2")],
        );
        assert_eq!(route(&s, "http://h/"), "via http://a:1");
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    }

    #[test]
    fn empty_variable_is_unset() {
        let s = settings(
            &no_flags(),
            &[("https_proxy", ""), ("HTTPS_PROXY", "http://u:2")],
        );
        assert_eq!(route(&s, "https://h/"), "via http://u:2");
        assert!(s.notes.is_empty());
        let s = settings(&no_flags(), &[("http_proxy", "  "), ("all_proxy", "")]);
        assert!(s.is_direct());
        // An empty specific variable does not hide all_proxy either.
        let s = settings(
            &no_flags(),
            &[("https_proxy", ""), ("all_proxy", "http://a:1")],
        );
        assert_eq!(route(&s, "https://h/"), "via http://a:1");
    }

    #[test]
    fn any_proxy_flag_replaces_the_environment() {
        let env = [
            ("https_proxy", "http://e:1"),
            ("HTTPS_PROXY", "http://E:1"),
            ("http_proxy", "http://e:2"),
        ];
        let flags = ProxyFlags {
            all: Some("socks5://f:3".into()),
            ..Default::default()
        };
        let s = settings(&flags, &env);
        assert_eq!(route(&s, "https://h/"), "via socks5://f:3");
        assert_eq!(route(&s, "http://h/"), "via socks5://f:3");
        assert!(s.notes.is_empty(), "unused variables are not discussed");
        let flags = ProxyFlags {
            https: Some("http://f:4".into()),
            ..Default::default()
        };
        let s = settings(&flags, &env);
        assert_eq!(route(&s, "https://h/"), "via http://f:4");
        assert_eq!(route(&s, "http://h/"), "direct");
        let off = ProxyFlags {
            all: Some(String::new()),
            ..Default::default()
        };
        let s = settings(&off, &env);
        assert!(s.is_direct());
        // A scheme's own flag, even empty, beats --all-proxy.
        let flags = ProxyFlags {
            all: Some("http://a:1".into()),
            https: Some(String::new()),
            ..Default::default()
        };
        let s = settings(&flags, &[]);
        assert_eq!(route(&s, "https://h/"), "direct");
        assert_eq!(route(&s, "http://h/"), "via http://a:1");
    }

    #[test]
    fn uppercase_http_proxy_is_ignored_under_cgi() {
        let s = settings(
            &no_flags(),
            &[("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")],
        );
        assert_eq!(route(&s, "http://h/"), "direct");
        assert!(s.notes[0].contains("REQUEST_METHOD"), "{:?}", s.notes);
        let s = settings(
            &no_flags(),
            &[("http_proxy", "http://ok:1"), ("REQUEST_METHOD", "GET")],
        );
        assert_eq!(route(&s, "http://h/"), "via http://ok:1");
    }

    #[test]
    fn bad_proxy_values_name_their_source_without_the_password() {
        let e = try_settings(&no_flags(), &[("ALL_PROXY", "socks4://u:secret@h:1")]).unwrap_err();
        assert!(e.contains("ALL_PROXY") && e.contains("unsupported"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let flags = ProxyFlags {
            all: Some("http://u:secret@".into()),
            ..Default::default()
        };
        let e = try_settings(&flags, &[]).unwrap_err();
        assert!(e.contains("--all-proxy") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn no_proxy_sources() {
        let env = [
            ("all_proxy", "http://p:1"),
            ("no_proxy", "a.example"),
            ("NO_PROXY", "b.example"),
        ];
        let s = settings(&no_flags(), &env);
        assert_eq!(route(&s, "http://a.example/"), "direct");
        assert_eq!(route(&s, "http://b.example/"), "via http://p:1");
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.notes[0].contains("using no_proxy=a.example"));
        let flags = ProxyFlags {
            no_proxy: Some("c.example".into()),
            ..Default::default()
        };
        let s = settings(&flags, &env);
        assert_eq!(route(&s, "http://a.example/"), "via http://p:1");
        assert_eq!(route(&s, "http://c.example/"), "direct");
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        // An empty --no-proxy switches the variables off.
        let flags = ProxyFlags {
            no_proxy: Some(String::new()),
            ..Default::default()
        };
        let s = settings(&flags, &env);
        assert_eq!(route(&s, "http://a.example/"), "via http://p:1");
    }

    #[test]
    fn odd_no_proxy_entries_from_the_environment_are_skipped_with_a_note() {
        let env = [
            ("all_proxy", "http://p:1"),
            ("no_proxy", "localhost,<local>,192.168.*, 10.0.0.0/8"),
        ];
        let s = settings(&no_flags(), &env);
        assert_eq!(route(&s, "http://localhost/"), "direct");
        assert_eq!(route(&s, "http://10.1.1.1/"), "direct");
        assert_eq!(route(&s, "http://192.168.1.1/"), "via http://p:1");
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
        assert!(s.notes[1].contains("\"192.168.*\"") && s.notes[1].contains("CIDR"));
        // Without a proxy, NO_PROXY is irrelevant and not discussed.
        let s = settings(&no_flags(), &[("no_proxy", "<local>")]);
        assert!(s.notes.is_empty());
        // On the command line the user can fix it at once: an error.
        let flags = ProxyFlags {
            no_proxy: Some("<local>".into()),
            ..Default::default()
        };
        assert!(
            try_settings(&flags, &[])
                .unwrap_err()
                .contains("--no-proxy")
        );
    }

    #[test]
    fn parse_forms_defaults_and_redaction() {
        let p = Proxy::parse("socks5://us%40er:p%3Ass@127.0.0.1:1080").unwrap();
        assert_eq!(p.auth, Some(("us@er".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://***@127.0.0.1:1080");
        assert_eq!(format!("{p:?}"), "socks5://***@127.0.0.1:1080");
        // A raw '@' in the password is tolerated: the last one ends userinfo.
        let p = Proxy::parse("http://u:p@ss@h:3128").unwrap();
        assert_eq!(p.auth, Some(("u".into(), "p@ss".into())));
        assert_eq!(p.host, "h");
        for (text, kind, port) in [
            ("h", ProxyKind::Http, 80),
            ("HTTP://h", ProxyKind::Http, 80),
            ("https://h", ProxyKind::Https, 443),
            ("socks5://h", ProxyKind::Socks5, 1080),
            ("socks5h://h:7891", ProxyKind::Socks5h, 7891),
            ("127.0.0.1:7890/", ProxyKind::Http, 7890),
        ] {
            let p = Proxy::parse(text).unwrap();
            assert_eq!((p.kind, p.port), (kind, port), "{text}");
        }
        let v6 = Proxy::parse("socks5h://[::1]:1080").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:1080");
        assert!(
            Proxy::parse("socks4://h:1")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(Proxy::parse("http://h:99999").is_err());
        assert!(Proxy::parse("http://").is_err());
    }

    #[test]
    fn debug_output_hides_credentials() {
        let flags = ProxyFlags {
            all: Some("socks5h://u:topsecret@h:1".into()),
            https: Some("http://u:topsecret@h:2".into()),
            ..Default::default()
        };
        let s = settings(&flags, &[]);
        for text in [format!("{flags:?}"), format!("{s:?}")] {
            assert!(!text.contains("topsecret"), "{text}");
        }
    }

    #[test]
    fn redact_text_hides_userinfo_only() {
        assert_eq!(redact_text("http://me:secret@host:1"), "http://***@host:1");
        assert_eq!(redact_text("me:se@cret@host:1"), "***@host:1");
        assert_eq!(redact_text("http://host:1/a@b"), "http://host:1/a@b");
        assert_eq!(redact_text("socks5h://host"), "socks5h://host");
        assert_eq!(redact_text("http://tok@h:1"), "http://***@h:1");
    }

    #[test]
    fn no_proxy_forms() {
        let np = NoProxy::parse(
            "example.com, .corp.net,10.0.0.0/8, 192.168.1.5, [::1], internal:8080, ::ffff:0:0/96, *.wild.org, 127.0.0.1:9000, fd00::/8",
        )
        .unwrap();
        assert!(np.matches("example.com", 443));
        assert!(np.matches("a.b.EXAMPLE.com", 443));
        assert!(np.matches("example.com.", 443), "trailing dot");
        assert!(!np.matches("badexample.com", 443));
        assert!(!np.matches("example.com.org", 443));
        assert!(
            np.matches("corp.net", 80),
            "a leading dot still matches the name itself"
        );
        assert!(np.matches("x.corp.net", 80));
        assert!(np.matches("wild.org", 80) && np.matches("a.wild.org", 80));
        assert!(np.matches("10.1.2.3", 80));
        assert!(!np.matches("11.1.2.3", 80));
        assert!(np.matches("192.168.1.5", 80));
        assert!(!np.matches("192.168.1.6", 80));
        assert!(np.matches("[::1]", 80));
        assert!(np.matches("::1", 80));
        assert!(np.matches("fd12::1", 80));
        assert!(np.matches("::ffff:1.2.3.4", 80));
        assert!(np.matches("internal", 8080));
        assert!(!np.matches("internal", 80));
        assert!(np.matches("127.0.0.1", 9000));
        assert!(
            !np.matches("127.0.0.1", 80),
            "loopback is not implicitly exempt"
        );
        assert!(!np.matches("localhost", 80), "nor is localhost");
        assert!(NoProxy::parse("*").unwrap().matches("anything", 1));
        assert!(NoProxy::parse("a, *").unwrap().matches("anything", 1));
        assert!(NoProxy::parse("").unwrap().entries.is_empty());
        assert!(NoProxy::parse(" , ,").unwrap().entries.is_empty());
        for bad in ["a b", "10.0.0.0/33", "h:port", "[::1", "a/b", "1.2.3.4/x"] {
            assert!(NoProxy::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(np.to_string().split(',').count(), 10);
    }

    #[test]
    fn no_proxy_applies_per_target_host() {
        let s = settings(
            &no_flags(),
            &[("all_proxy", "http://p:1"), ("NO_PROXY", "cdn.example")],
        );
        assert_eq!(route(&s, "https://hub.example/x"), "via http://p:1");
        assert_eq!(route(&s, "https://eu.cdn.example/x"), "direct");
        assert_eq!(route(&s, "http://cdn.example:8080/x"), "direct");
    }
}
