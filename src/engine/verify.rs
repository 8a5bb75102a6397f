//! Whole-file checksums (`--checksum TYPE=HEX`, and hfd's per-file hashes).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use memmap2::{Advice, MmapOptions};
use sha1::Digest;
use sha1::digest::DynDigest;

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

/// A hasher for `sum`'s algorithm over a file of `len` bytes (git's blob id
/// starts with a header naming the length).
pub(crate) fn hasher(sum: &Checksum, len: u64) -> Box<dyn DynDigest + Send> {
    match sum.kind {
        Kind::Sha1 => Box::new(sha1::Sha1::new()),
        Kind::Sha224 => Box::new(sha2::Sha224::new()),
        Kind::Sha256 => Box::new(sha2::Sha256::new()),
        Kind::Sha384 => Box::new(sha2::Sha384::new()),
        Kind::Sha512 => Box::new(sha2::Sha512::new()),
        Kind::GitBlobSha1 => {
            let mut d = sha1::Sha1::new();
            Digest::update(&mut d, format!("blob {len}\0").as_bytes());
            Box::new(d)
        }
    }
}

fn hex(d: Box<dyn DynDigest + Send>) -> String {
    d.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes the file at `path` with the algorithm of `sum`; returns lowercase hex.
pub fn digest_file(path: &Path, sum: &Checksum) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut d = hasher(sum, f.metadata()?.len());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(d));
        }
        d.update(&buf[..n]);
    }
}

/// Bytes hashed per mapping in [`digest_own_file`].
///
/// The pages of a live mapping count as the process's RSS, which users read
/// as memory held: a 64 MiB window made hfd's peak RSS 137 MiB on two
/// files hashed at once (13 MiB with reads). At 4 MiB a window adds that
/// much per file being checked, and hashing 1 GiB costs 0.70-0.73 CPU-s
/// against 0.68-0.70 with 64 MiB windows and 0.74-0.83 with reads.
const MAP_WINDOW: u64 = 4 << 20;

/// Hashes a file the engine wrote and alone uses (its partial data under a
/// lock), through read-only mappings instead of reads.
///
/// A read copies every byte once more before the hash sees it: 0.14-0.23
/// CPU-s/GiB on our machine, next to 0.6 for sha-256 itself (with SHA-NI);
/// hashing the mapped page cache costs 0.02-0.07 instead (docs/performance.md).
/// The price of a mapping is that another process truncating the file turns
/// into SIGBUS rather than an error, so files that belong to the user (a
/// re-check with `--verify`, a file another tool wrote) go through
/// [`digest_file`].
pub fn digest_own_file(path: &Path, sum: &Checksum) -> io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    digest_own_file_from(path, hasher(sum, len), 0)
}

/// [`digest_own_file`] for a digest that has seen the file's first `from`
/// bytes already (see [`super::prefix_hash`]).
pub(crate) fn digest_own_file_from(
    path: &Path,
    mut d: Box<dyn DynDigest + Send>,
    from: u64,
) -> io::Result<String> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut at = from;
    while at < len {
        let n = (len - at).min(MAP_WINDOW);
        // Safety: the file is the engine's own partial data, which no other
        // code of ours writes while it is checked; see above for other
        // processes.
        let map = unsafe { MmapOptions::new().offset(at).len(n as usize).map(&f)? };
        let _ = map.advise(Advice::Sequential);
        d.update(&map);
        at += n;
    }
    Ok(hex(d))
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
        assert_eq!(digest_own_file(&p, &s).unwrap(), s.hex());
        assert_eq!(digest_own_file(&p, &g).unwrap(), g.hex());
        assert!(Checksum::parse("md5=abc").is_err());
        assert!(Checksum::parse("sha-256=abc").is_err());
        assert!(Checksum::parse("nonsense").is_err());
    }

    #[test]
    fn mapped_and_read_hashes_agree_across_windows_and_on_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Checksum::sha256(&"0".repeat(64)).unwrap();
        let g = Checksum::git_blob_sha1(&"0".repeat(40)).unwrap();
        for len in [0, MAP_WINDOW as usize + 3] {
            let p = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&p, &data).unwrap();
            for sum in [&s, &g] {
                assert_eq!(
                    digest_own_file(&p, sum).unwrap(),
                    digest_file(&p, sum).unwrap()
                );
            }
        }
    }
}
