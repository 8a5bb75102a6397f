//! Whole-file checksums (`--checksum TYPE=HEX`, and hfd's per-file hashes).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha1::Digest as _;

/// An expected digest of the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    kind: Kind,
    hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    /// Git's blob id: sha1 of `"blob <len>\0"` followed by the content.
    GitBlobSha1,
}

impl Checksum {
    /// Parses aria2's `TYPE=HEX` form (`sha-256=…`, also `sha256=…`).
    pub fn parse(text: &str) -> Result<Checksum, String> {
        let (t, hex) = text.split_once('=').ok_or_else(|| {
            format!("invalid checksum {text:?}: expected TYPE=HEX, e.g. sha-256=<64 hex digits>")
        })?;
        let kind = match t.trim().to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Kind::Sha1,
            "sha224" => Kind::Sha224,
            "sha256" => Kind::Sha256,
            "sha384" => Kind::Sha384,
            "sha512" => Kind::Sha512,
            "gitsha1" | "gitblob" => Kind::GitBlobSha1,
            other => {
                return Err(format!(
                    "unsupported checksum type {other:?}: use sha-1, sha-224, sha-256, sha-384 or sha-512"
                ));
            }
        };
        Self::new(kind, hex)
    }

    fn new(kind: Kind, hex: &str) -> Result<Checksum, String> {
        let hex = hex.trim().to_ascii_lowercase();
        let want = match kind {
            Kind::Sha1 | Kind::GitBlobSha1 => 40,
            Kind::Sha224 => 56,
            Kind::Sha256 => 64,
            Kind::Sha384 => 96,
            Kind::Sha512 => 128,
        };
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid {} digest {hex:?}: expected {want} hex digits",
                kind_name(kind)
            ));
        }
        Ok(Checksum { kind, hex })
    }

    pub fn sha256(hex: &str) -> Result<Checksum, String> {
        Self::new(Kind::Sha256, hex)
    }

    pub fn git_blob_sha1(hex: &str) -> Result<Checksum, String> {
        Self::new(Kind::GitBlobSha1, hex)
    }

    pub fn algorithm(&self) -> &'static str {
        kind_name(self.kind)
    }

    /// The expected digest, lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Sha1 => "sha-1",
        Kind::Sha224 => "sha-224",
        Kind::Sha256 => "sha-256",
        Kind::Sha384 => "sha-384",
        Kind::Sha512 => "sha-512",
        Kind::GitBlobSha1 => "git-sha1",
    }
}

fn hash_reader<D: sha1::Digest>(mut d: D, r: &mut impl Read) -> io::Result<String> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok(d.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hashes the file at `path` with the algorithm of `sum`; returns lowercase hex.
pub fn digest_file(path: &Path, sum: &Checksum) -> io::Result<String> {
    let mut f = File::open(path)?;
    match sum.kind {
        Kind::Sha1 => hash_reader(sha1::Sha1::new(), &mut f),
        Kind::Sha224 => hash_reader(sha2::Sha224::new(), &mut f),
        Kind::Sha256 => hash_reader(sha2::Sha256::new(), &mut f),
        Kind::Sha384 => hash_reader(sha2::Sha384::new(), &mut f),
        Kind::Sha512 => hash_reader(sha2::Sha512::new(), &mut f),
        Kind::GitBlobSha1 => {
            let len = f.metadata()?.len();
            let mut d = sha1::Sha1::new();
            d.update(format!("blob {len}\0").as_bytes());
            hash_reader(d, &mut f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_known_digests() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        let s = Checksum::parse(
            "sha-256=5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        )
        .unwrap();
        assert_eq!(digest_file(&p, &s).unwrap(), s.hex());
        // `git hash-object` of "hello\n"
        let g = Checksum::git_blob_sha1("ce013625030ba8dba906f756967f9e9ca394464a").unwrap();
        assert_eq!(digest_file(&p, &g).unwrap(), g.hex());
        assert!(Checksum::parse("md5=abc").is_err());
        assert!(Checksum::parse("sha-256=abc").is_err());
        assert!(Checksum::parse("nonsense").is_err());
    }
}
