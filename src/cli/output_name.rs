//! The default output file name: the URL's last path segment, decoded and
//! made safe to create in the output folder.

use percent_encoding::percent_decode_str;
use url::Url;

/// The file name a download of `url` gets when no `-o` is given.
pub fn from_url(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    sanitize(&percent_decode_str(last).decode_utf8_lossy())
}

/// Makes `name` a single, harmless file name: no separators, no control
/// characters, not `.` or `..`, at most 255 bytes.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    out = out.trim().to_string();
    if out.is_empty() || out == "." || out == ".." {
        return "index.html".to_string();
    }
    while out.len() > 255 {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(u: &str) -> String {
        from_url(&Url::parse(u).unwrap())
    }

    #[test]
    fn names() {
        assert_eq!(
            name("http://h/a/model.safetensors?x=1"),
            "model.safetensors"
        );
        assert_eq!(name("http://h/a/my%20file%231.bin"), "my file#1.bin");
        assert_eq!(name("http://h/a/..%2Fetc%2Fpasswd"), ".._etc_passwd");
        assert_eq!(name("http://h/"), "index.html");
        assert_eq!(name("http://h/%2E%2E"), "index.html");
        assert_eq!(name("http://h/a%00b"), "a_b");
        assert!(name(&format!("http://h/{}", "x".repeat(400))).len() <= 255);
    }
}
