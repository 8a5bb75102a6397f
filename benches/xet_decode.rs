//! The cost of decoding Xet chunks: CPU seconds per GiB of file bytes, for
//! each way a chunk is stored and for the mock CAS's mix (none, LZ4,
//! BG4+LZ4 by turn), fed to [`ChunkStream`] in 16 KiB pieces as they come
//! off the network.
//!
//! The data is what model weights look like to a compressor: three bytes
//! in four random, the fourth (a float's exponent byte) from a narrow
//! range, so LZ4 alone barely shrinks it and byte grouping helps. Chunks
//! are 64 KiB; `HFD_BENCH_XET_MIB` sets the size (default 256).
//!
//! Run: `cargo bench --bench xet_decode`.

use std::io::Write;

use hfd::xet::chunk::{Chunk, ChunkStream};

const CHUNK: usize = 64 << 10;
const PIECE: usize = 16 << 10;
const ROUNDS: usize = 5;

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 4 == 3 {
                0x3c + (x % 4) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A chunk as stored: header, then its bytes per `scheme`.
fn stored(c: &[u8], scheme: u8) -> Vec<u8> {
    let body = match scheme {
        1 => lz4(c),
        2 => {
            let mut g = Vec::with_capacity(c.len());
            for k in 0..4 {
                g.extend(c.iter().skip(k).step_by(4));
            }
            lz4(&g)
        }
        _ => c.to_vec(),
    };
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    out.push(scheme);
    out.extend_from_slice(&(c.len() as u32).to_le_bytes()[..3]);
    out.extend(body);
    out
}

/// How chunk `i` is stored: 0 none, 1 LZ4, 2 BG4+LZ4.
type Scheme = fn(usize) -> u8;

/// A xorb of `raw`'s chunks, stored by `scheme(i)`.
fn xorb(raw: &[u8], scheme: impl Fn(usize) -> u8) -> (Vec<u8>, u32) {
    let mut x = Vec::new();
    let mut n = 0;
    for (i, c) in raw.chunks(CHUNK).enumerate() {
        x.extend(stored(c, scheme(i)));
        n += 1;
    }
    (x, n)
}

/// CPU seconds of this thread so far (Linux: its first `schedstat` field,
/// nanoseconds on a CPU), so other load on the machine does not count.
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux");
    let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    ns as f64 * 1e-9
}

fn decode(x: &[u8], n: u32) -> u64 {
    let mut s = ChunkStream::new(0..n);
    let mut out: Vec<Chunk> = Vec::new();
    let mut bytes = 0;
    for p in x.chunks(PIECE) {
        s.push(p, &mut out).unwrap();
        bytes += out.drain(..).map(|c| c.data.len() as u64).sum::<u64>();
    }
    s.finish().unwrap();
    bytes
}

fn main() {
    let mib: usize = std::env::var("HFD_BENCH_XET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let raw = data(mib << 20);
    let cases: [(&str, Scheme); 4] = [
        ("none", |_| 0),
        ("lz4", |_| 1),
        ("bg4+lz4", |_| 2),
        ("mock mix", |i| (i % 3) as u8),
    ];
    println!("{mib} MiB in {} KiB chunks, best of {ROUNDS}", CHUNK >> 10);
    for (name, scheme) in cases {
        let (x, n) = xorb(&raw, scheme);
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let t = cpu();
            let got = decode(&x, n);
            best = best.min(cpu() - t);
            assert_eq!(got, raw.len() as u64);
        }
        let gib = raw.len() as f64 / f64::from(1u32 << 30);
        println!(
            "{name:9} stored {:5.1}%  {:.3} CPU-s/GiB",
            100.0 * x.len() as f64 / raw.len() as f64,
            best / gib
        );
    }
}
