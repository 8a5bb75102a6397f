//! Protecting and opening TLS records with the traffic keys rustls hands
//! over once the handshake is done (see [`super::tls_link`] for why).
//!
//! Only what follows a handshake is here: AEAD records (RFC 8446 section 5.2
//! for TLS 1.3, RFC 5288 and RFC 7905 for TLS 1.2), one direction per
//! [`Protection`], each with its own sequence number. A record that fails
//! its tag check is an error: nothing of it is handed on.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::ConnectionTrafficSecrets;

/// Largest plaintext in one record (2^14), and the largest protected
/// record body a peer may send (RFC 8446 5.2: plaintext + 256).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
pub const MAX_BODY: usize = MAX_PLAINTEXT + 256;
pub const HEADER: usize = 5;
const TAG: usize = 16;
/// TLS 1.2 AES-GCM sends 8 bytes of its nonce with every record.
const EXPLICIT_NONCE: usize = 8;

/// Record content types.
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

/// Why a record could not be opened or sealed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("a TLS record failed its integrity check (corrupted or forged data)")]
    BadTag,
    #[error("a TLS record of {0} bytes is larger than TLS allows")]
    TooLarge(usize),
    #[error("a TLS record too short for its cipher ({0} bytes)")]
    TooShort(usize),
    #[error("a TLS 1.3 record without a content type")]
    NoContentType,
    #[error("TLS sequence numbers ran out; the connection must be renewed")]
    SequenceExhausted,
    #[error("unsupported TLS traffic keys: {0}")]
    Unsupported(&'static str),
}

/// Where the plaintext of an opened record lies inside the record body.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub content_type: u8,
    pub start: usize,
    pub len: usize,
}

/// The keys and the sequence number of one direction of a connection.
pub struct Protection {
    version: Version,
    key: LessSafeKey,
    iv: [u8; 12],
    /// TLS 1.2 AES-GCM: the nonce is the IV's first 4 bytes and 8 bytes
    /// carried in the record.
    explicit_nonce: bool,
    seq: u64,
}

impl Protection {
    pub fn new(
        version: Version,
        seq: u64,
        secrets: ConnectionTrafficSecrets,
    ) -> Result<Protection, RecordError> {
        let (alg, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(RecordError::Unsupported("cipher")),
        };
        Protection::with_key(version, seq, alg, key.as_ref(), iv.as_ref(), gcm)
    }

    fn with_key(
        version: Version,
        seq: u64,
        alg: &'static aead::Algorithm,
        key: &[u8],
        iv: &[u8],
        gcm: bool,
    ) -> Result<Protection, RecordError> {
        let key = UnboundKey::new(alg, key).map_err(|_| RecordError::Unsupported("key length"))?;
        let iv: [u8; 12] = iv
            .try_into()
            .map_err(|_| RecordError::Unsupported("IV length"))?;
        Ok(Protection {
            version,
            key: LessSafeKey::new(key),
            iv,
            explicit_nonce: gcm && version == Version::Tls12,
            seq,
        })
    }

    /// The per-record nonce of TLS 1.3 and of TLS 1.2 ChaCha20: the IV with
    /// the sequence number XORed into its last 8 bytes.
    fn seq_nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// TLS 1.2's additional data: sequence number, type, version, length.
    fn aad12(&self, content_type: u8, len: usize) -> [u8; 13] {
        let mut a = [0u8; 13];
        a[..8].copy_from_slice(&self.seq.to_be_bytes());
        a[8] = content_type;
        a[9..11].copy_from_slice(&[3, 3]);
        a[11..].copy_from_slice(&(len as u16).to_be_bytes());
        a
    }

    fn next_seq(&mut self) -> Result<(), RecordError> {
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or(RecordError::SequenceExhausted)?;
        Ok(())
    }

    /// Decrypts `body` (the record after its 5-byte `header`) in place.
    pub fn open(&mut self, header: [u8; HEADER], body: &mut [u8]) -> Result<Opened, RecordError> {
        if body.len() > MAX_BODY {
            return Err(RecordError::TooLarge(body.len()));
        }
        let opened = match self.version {
            Version::Tls13 => {
                if body.len() < TAG {
                    return Err(RecordError::TooShort(body.len()));
                }
                let nonce = Nonce::assume_unique_for_key(self.seq_nonce());
                let plain = self
                    .key
                    .open_in_place(nonce, Aad::from(header), body)
                    .map_err(|_| RecordError::BadTag)?;
                // The inner plaintext ends in its content type, then padding zeros.
                let end = plain
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(RecordError::NoContentType)?;
                Opened {
                    content_type: plain[end],
                    start: 0,
                    len: end,
                }
            }
            Version::Tls12 if self.explicit_nonce => {
                if body.len() < EXPLICIT_NONCE + TAG {
                    return Err(RecordError::TooShort(body.len()));
                }
                let mut n = [0u8; 12];
                n[..4].copy_from_slice(&self.iv[..4]);
                n[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
                let len = body.len() - EXPLICIT_NONCE - TAG;
                let aad = self.aad12(header[0], len);
                self.key
                    .open_in_place(
                        Nonce::assume_unique_for_key(n),
                        Aad::from(aad),
                        &mut body[EXPLICIT_NONCE..],
                    )
                    .map_err(|_| RecordError::BadTag)?;
                Opened {
                    content_type: header[0],
                    start: EXPLICIT_NONCE,
                    len,
                }
            }
            Version::Tls12 => {
                if body.len() < TAG {
                    return Err(RecordError::TooShort(body.len()));
                }
                let len = body.len() - TAG;
                let aad = self.aad12(header[0], len);
                let nonce = Nonce::assume_unique_for_key(self.seq_nonce());
                self.key
                    .open_in_place(nonce, Aad::from(aad), body)
                    .map_err(|_| RecordError::BadTag)?;
                Opened {
                    content_type: header[0],
                    start: 0,
                    len,
                }
            }
        };
        if opened.len > MAX_PLAINTEXT {
            return Err(RecordError::TooLarge(opened.len));
        }
        self.next_seq()?;
        Ok(opened)
    }

    /// Appends `data` to `out` as one protected record of `content_type`;
    /// `data` must fit one record.
    pub fn seal(
        &mut self,
        content_type: u8,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if data.len() > MAX_PLAINTEXT {
            return Err(RecordError::TooLarge(data.len()));
        }
        let seal_err = |_| RecordError::Unsupported("sealing failed");
        match self.version {
            Version::Tls13 => {
                let len = data.len() + 1 + TAG;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                let mut inner = Vec::with_capacity(len);
                inner.extend_from_slice(data);
                inner.push(content_type);
                let nonce = Nonce::assume_unique_for_key(self.seq_nonce());
                self.key
                    .seal_in_place_append_tag(nonce, Aad::from(header), &mut inner)
                    .map_err(seal_err)?;
                out.extend_from_slice(&header);
                out.extend_from_slice(&inner);
            }
            Version::Tls12 => {
                let explicit = if self.explicit_nonce {
                    EXPLICIT_NONCE
                } else {
                    0
                };
                let len = explicit + data.len() + TAG;
                let nonce = self.seq_nonce();
                let aad = self.aad12(content_type, data.len());
                let mut inner = data.to_vec();
                self.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut inner,
                    )
                    .map_err(seal_err)?;
                out.extend_from_slice(&[content_type, 3, 3, (len >> 8) as u8, len as u8]);
                // A unique nonce part: the sequence-derived one.
                out.extend_from_slice(&nonce[12 - explicit..]);
                out.extend_from_slice(&inner);
            }
        }
        self.next_seq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One direction's keys: 0 AES-128-GCM, 1 AES-256-GCM, 2 ChaCha20.
    fn keys(version: Version, seq: u64, kind: u8) -> Protection {
        let (alg, len, gcm) = match kind {
            0 => (&aead::AES_128_GCM, 16, true),
            1 => (&aead::AES_256_GCM, 32, true),
            _ => (&aead::CHACHA20_POLY1305, 32, false),
        };
        Protection::with_key(version, seq, alg, &[7u8; 32][..len], &[9u8; 12], gcm).unwrap()
    }

    fn split(record: &[u8]) -> ([u8; HEADER], Vec<u8>) {
        (
            record[..HEADER].try_into().unwrap(),
            record[HEADER..].to_vec(),
        )
    }

    #[test]
    fn sealed_records_open_in_every_version_and_cipher() {
        for version in [Version::Tls12, Version::Tls13] {
            for kind in 0..3 {
                let mut tx = keys(version, 0, kind);
                let mut rx = keys(version, 0, kind);
                for (i, data) in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0u8; 300], b""]
                    .iter()
                    .enumerate()
                {
                    let mut out = Vec::new();
                    tx.seal(APPLICATION_DATA, data, &mut out).unwrap();
                    let (h, mut body) = split(&out);
                    assert_eq!(u16::from_be_bytes([h[3], h[4]]) as usize, body.len());
                    let o = rx.open(h, &mut body).unwrap();
                    assert_eq!(o.content_type, APPLICATION_DATA, "{version:?} {kind} {i}");
                    assert_eq!(&body[o.start..o.start + o.len], *data);
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_a_replay_or_a_wrong_key_is_refused() {
        for version in [Version::Tls12, Version::Tls13] {
            let mut tx = keys(version, 5, 0);
            let mut out = Vec::new();
            tx.seal(APPLICATION_DATA, b"hello", &mut out).unwrap();
            let (h, body) = split(&out);
            // Flipped bit.
            let mut rx = keys(version, 5, 0);
            let mut bad = body.clone();
            bad[HEADER] ^= 1;
            assert!(matches!(rx.open(h, &mut bad), Err(RecordError::BadTag)));
            // Out of sequence (a replayed or dropped record).
            let mut rx = keys(version, 6, 0);
            let r = rx.open(h, &mut body.clone());
            // TLS 1.2 GCM carries its nonce, but the AAD still names the sequence.
            assert!(matches!(r, Err(RecordError::BadTag)), "{version:?}");
            // Another key.
            let mut rx = keys(version, 5, 1);
            assert!(matches!(
                rx.open(h, &mut body.clone()),
                Err(RecordError::BadTag)
            ));
        }
    }

    #[test]
    fn tls13_inner_type_and_padding_are_read() {
        let mut tx = keys(Version::Tls13, 0, 2);
        let mut rx = keys(Version::Tls13, 0, 2);
        let mut out = Vec::new();
        // A handshake message (content type 22) followed by padding zeros,
        // as a server may send: sealed by hand as the inner plaintext.
        tx.seal(0, &[4, 0, 0, 1, 9, HANDSHAKE, 0, 0, 0], &mut out)
            .unwrap();
        let (h, mut body) = split(&out);
        let o = rx.open(h, &mut body).unwrap();
        assert_eq!(o.content_type, HANDSHAKE);
        assert_eq!(&body[..o.len], &[4, 0, 0, 1, 9]);
        // Only zeros: no content type at all.
        let mut out = Vec::new();
        tx.seal(0, &[0, 0], &mut out).unwrap();
        let (h, mut body) = split(&out);
        assert!(matches!(
            rx.open(h, &mut body),
            Err(RecordError::NoContentType)
        ));
    }

    #[test]
    fn oversized_records_are_refused() {
        let mut p = keys(Version::Tls13, 0, 0);
        let mut big = vec![0u8; MAX_BODY + 1];
        assert!(matches!(
            p.open([23, 3, 3, 0, 0], &mut big),
            Err(RecordError::TooLarge(_))
        ));
        assert!(
            p.seal(23, &vec![0u8; MAX_PLAINTEXT + 1], &mut Vec::new())
                .is_err()
        );
    }
}
