//! Which request headers go to which origin.
//!
//! Headers that identify the user (`Authorization`, `Cookie`,
//! `Proxy-Authorization`, and `user:password@` in the URL, sent as Basic
//! auth) go only to the origin the user named: never to a storage host a
//! redirect leads to, whose operator the user never chose to trust.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, PROXY_AUTHORIZATION};
use url::Url;

use crate::net::{NetError, Origin};

/// The user's headers for requests that start at one URL.
#[derive(Clone, Debug)]
pub struct Credentials {
    origin: Origin,
    /// Sent everywhere.
    public: HeaderMap,
    /// Sent only to `origin`.
    secret: HeaderMap,
}

fn is_secret(name: &HeaderName) -> bool {
    name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION
}

impl Credentials {
    /// Splits `headers` for requests starting at `url`; user info in `url`
    /// becomes `Authorization: Basic` unless the user gave one.
    pub fn new(url: &Url, headers: &HeaderMap) -> Result<Credentials, NetError> {
        let origin = Origin::of(url)?;
        let mut public = HeaderMap::new();
        let mut secret = HeaderMap::new();
        for (k, v) in headers {
            if is_secret(k) {
                secret.append(k, v.clone());
            } else {
                public.append(k, v.clone());
            }
        }
        if !secret.contains_key(AUTHORIZATION)
            && let Some(basic) = basic_auth(url)
        {
            secret.insert(AUTHORIZATION, basic);
        }
        Ok(Credentials {
            origin,
            public,
            secret,
        })
    }

    /// Headers for a request to `url`: the secret ones only on the origin
    /// the user named.
    pub fn headers_for(&self, url: &Url) -> HeaderMap {
        let mut h = self.public.clone();
        if self.owns(url) {
            for (k, v) in &self.secret {
                h.append(k, v.clone());
            }
        }
        h
    }

    /// Whether `url` is on the origin these credentials belong to.
    pub fn owns(&self, url: &Url) -> bool {
        Origin::of(url).is_ok_and(|o| o == self.origin)
    }
}

/// `user:password@` in a URL as `Authorization: Basic`, as curl and aria2c
/// send it.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let dec = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = dec(url.username());
    pair.push(b':');
    pair.extend(dec(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_on_their_origin() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert("x-other", HeaderValue::from_static("1"));
        let c = Credentials::new(&Url::parse("https://hub.example/a").unwrap(), &h).unwrap();
        let same = c.headers_for(&Url::parse("https://hub.example/b?x").unwrap());
        assert_eq!(same.get(AUTHORIZATION).unwrap(), "Bearer t");
        for other in [
            "https://cdn.example/a",
            "http://hub.example/a",
            "https://hub.example:8443/",
        ] {
            let h = c.headers_for(&Url::parse(other).unwrap());
            assert!(h.get(AUTHORIZATION).is_none(), "{other}");
            assert_eq!(h.get("x-other").unwrap(), "1");
        }
    }

    #[test]
    fn user_info_is_basic_auth_unless_one_is_given() {
        let u = Url::parse("http://al%40x:p%3Aw@h.example/f").unwrap();
        let c = Credentials::new(&u, &HeaderMap::new()).unwrap();
        // base64("al@x:p:w")
        assert_eq!(
            c.headers_for(&u).get(AUTHORIZATION).unwrap(),
            "Basic YWxAeDpwOnc="
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let c = Credentials::new(&u, &h).unwrap();
        assert_eq!(c.headers_for(&u).get(AUTHORIZATION).unwrap(), "Bearer t");
    }
}
