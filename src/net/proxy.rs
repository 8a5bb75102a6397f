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

/// Shown with the password replaced, so proxies can appear in messages and logs.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some((user, _)) = &self.auth {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}", self.authority())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the password of a `user:password@` in free text.
pub fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (scheme_end, Some(at)) => {
            let start = scheme_end.map_or(0, |i| i + 3);
            if at < start {
                return text.to_string();
            }
            let userinfo = &text[start..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &text[..start], user, &text[at..])
        }
        _ => text.to_string(),
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
#[derive(Clone, Debug, Default)]
pub struct ProxyFlags {
    pub all: Option<String>,
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Option<String>,
}

/// The resolved proxy configuration.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    http: Option<Arc<Proxy>>,
    https: Option<Arc<Proxy>>,
    no_proxy: NoProxy,
    /// Lines worth telling the user once (which spelling of a variable won).
    pub notes: Vec<String>,
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
    pub fn resolve(
        flags: &ProxyFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut notes = Vec::new();
        let mut var = |lower: &str, upper: &str| -> Option<String> {
            let l = env(lower).filter(|v| !v.trim().is_empty());
            let u = env(upper).filter(|v| !v.trim().is_empty());
            match (l, u) {
                (Some(l), Some(u)) if l.trim() != u.trim() => {
                    notes.push(format!(
                        "both {lower} and {upper} are set and differ; using {lower}={}",
                        redact_text(l.trim())
                    ));
                    Some(l)
                }
                (Some(l), _) => Some(l),
                (None, u) => u,
            }
        };
        let env_http = var("http_proxy", "HTTP_PROXY");
        let env_https = var("https_proxy", "HTTPS_PROXY");
        let env_all = var("all_proxy", "ALL_PROXY");
        let env_no = var("no_proxy", "NO_PROXY");

        let parse = |v: &Option<String>| -> Result<Option<Arc<Proxy>>, String> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => Proxy::parse(s).map(|p| Some(Arc::new(p))),
            }
        };
        // A flag that is present (even empty) decides; otherwise the environment.
        let any_flag = flags.all.is_some() || flags.http.is_some() || flags.https.is_some();
        let pick = |flag: &Option<String>, env_specific: &Option<String>| {
            if any_flag {
                match flag {
                    Some(_) => parse(flag),
                    None => parse(&flags.all),
                }
            } else {
                match env_specific {
                    Some(_) => parse(env_specific),
                    None => parse(&env_all),
                }
            }
        };
        let http = pick(&flags.http, &env_http)?;
        let https = pick(&flags.https, &env_https)?;
        let no_proxy = NoProxy::parse(
            flags
                .no_proxy
                .as_deref()
                .or(env_no.as_deref())
                .unwrap_or(""),
        )?;
        Ok(ProxySettings {
            http,
            https,
            no_proxy,
            notes,
        })
    }

    /// The route for a request to `url`, decided by the URL's own host and scheme.
    pub fn route_for(&self, url: &Url) -> Route {
        let proxy = match url.scheme() {
            "https" => &self.https,
            _ => &self.http,
        };
        match proxy {
            Some(p) => {
                let host = url.host_str().unwrap_or("");
                let port = url.port_or_known_default().unwrap_or(0);
                if self.no_proxy.matches(host, port) {
                    Route::Direct
                } else {
                    Route::Via(p.clone())
                }
            }
            None => Route::Direct,
        }
    }

    /// True when no proxy is configured for any scheme.
    pub fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }
}

/// A NO_PROXY list with curl's matching rules plus ports and CIDR ranges.
#[derive(Clone, Debug, Default)]
pub struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
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
    /// Parses a comma-separated list; entries may carry a `:port`, names may
    /// start with a dot, `*` alone exempts everything.
    pub fn parse(list: &str) -> Result<NoProxy, String> {
        let mut np = NoProxy::default();
        for raw in list.split(',') {
            let e = raw.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                np.all = true;
                continue;
            }
            np.entries.push(parse_no_proxy_entry(&e).ok_or_else(|| {
                format!("invalid NO_PROXY entry {e:?}: expected a host name, an IP address or a CIDR range, with an optional :port")
            })?);
        }
        Ok(np)
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

    fn settings(flags: &ProxyFlags, env: &[(&str, &str)]) -> ProxySettings {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxySettings::resolve(flags, |k| map.get(k).cloned()).unwrap()
    }

    fn route(s: &ProxySettings, url: &str) -> String {
        s.route_for(&Url::parse(url).unwrap()).to_string()
    }

    #[test]
    fn each_variable_alone_applies_to_its_scheme() {
        let none = ProxyFlags::default();
        for (var, http, https) in [
            ("http_proxy", true, false),
            ("HTTP_PROXY", true, false),
            ("https_proxy", false, true),
            ("HTTPS_PROXY", false, true),
            ("all_proxy", true, true),
            ("ALL_PROXY", true, true),
        ] {
            let s = settings(&none, &[(var, "127.0.0.1:7890")]);
            let via = "via http://127.0.0.1:7890";
            assert_eq!(route(&s, "http://h/x") == via, http, "{var} http");
            assert_eq!(route(&s, "https://h/x") == via, https, "{var} https");
        }
    }

    #[test]
    fn lowercase_wins_and_is_noted() {
        let s = settings(
            &ProxyFlags::default(),
            &[
                ("https_proxy", "socks5h://a:1"),
                ("HTTPS_PROXY", "http://b:2"),
            ],
        );
        assert_eq!(route(&s, "https://h/"), "via socks5h://a:1");
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].contains("https_proxy"), "{:?}", s.notes);
        let same = settings(
            &ProxyFlags::default(),
            &[("https_proxy", "http://b:2"), ("HTTPS_PROXY", "http://b:2")],
        );
        assert!(same.notes.is_empty());
    }

    #[test]
    fn empty_variable_is_unset_and_flags_beat_env() {
        let s = settings(
            &ProxyFlags::default(),
            &[("https_proxy", ""), ("HTTPS_PROXY", "http://u:2")],
        );
        assert_eq!(route(&s, "https://h/"), "via http://u:2");
        let flags = ProxyFlags {
            all: Some("socks5://f:3".into()),
            ..Default::default()
        };
        let s = settings(&flags, &[("https_proxy", "http://e:1")]);
        assert_eq!(route(&s, "https://h/"), "via socks5://f:3");
        let off = ProxyFlags {
            all: Some(String::new()),
            ..Default::default()
        };
        let s = settings(&off, &[("all_proxy", "http://e:1")]);
        assert_eq!(route(&s, "https://h/"), "direct");
    }

    #[test]
    fn credentials_are_decoded_and_redacted() {
        let p = Proxy::parse("socks5://us%40er:p%3Ass@127.0.0.1:1080").unwrap();
        assert_eq!(p.auth, Some(("us@er".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://us@er:***@127.0.0.1:1080");
        assert_eq!(
            redact_text("http://me:secret@host:1"),
            "http://me:***@host:1"
        );
        assert!(
            Proxy::parse("socks4://h:1")
                .unwrap_err()
                .contains("unsupported")
        );
        assert_eq!(Proxy::parse("h").unwrap().authority(), "h:80");
    }

    #[test]
    fn no_proxy_forms() {
        let np = NoProxy::parse(
            "example.com, .corp.net,10.0.0.0/8, 192.168.1.5, [::1], internal:8080, ::ffff:0:0/96",
        )
        .unwrap();
        assert!(np.matches("example.com", 443));
        assert!(np.matches("a.b.EXAMPLE.com", 443));
        assert!(!np.matches("badexample.com", 443));
        assert!(np.matches("corp.net", 80));
        assert!(np.matches("x.corp.net", 80));
        assert!(np.matches("10.1.2.3", 80));
        assert!(!np.matches("11.1.2.3", 80));
        assert!(np.matches("192.168.1.5", 80));
        assert!(np.matches("[::1]", 80));
        assert!(np.matches("internal", 8080));
        assert!(!np.matches("internal", 80));
        assert!(
            !np.matches("127.0.0.1", 80),
            "loopback is not implicitly exempt"
        );
        assert!(NoProxy::parse("*").unwrap().matches("anything", 1));
        assert!(NoProxy::parse("a b").is_err());
    }

    #[test]
    fn no_proxy_applies_per_target_host() {
        let s = settings(
            &ProxyFlags::default(),
            &[("all_proxy", "http://p:1"), ("NO_PROXY", "cdn.example")],
        );
        assert_eq!(route(&s, "https://hub.example/x"), "via http://p:1");
        assert_eq!(route(&s, "https://eu.cdn.example/x"), "direct");
    }
}
