//! pwrite vs mmap sink, written the way a segmented download writes.
//!
//! The file is split into 16 regions (like 16 segments) and written with
//! 256 KiB batches taken round-robin from each region, every batch made of
//! 16 KiB frames as they come off the network. Each run creates a fresh file,
//! allocates it, writes it through the sink, then flushes and fdatasyncs;
//! the file is deleted afterwards. Rounds alternate the order of the
//! variants so that none always runs on a warmer or colder system.
//!
//! `HFD_BENCH_SINK_MIB` sets the file size (default 1024); `HFD_BENCH_DIR`
//! the disk folder (default `target/bench-sink`). tmpfs is `/dev/shm`.
//!
//! Run: `cargo bench --bench sink`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use hfd::storage::mmap::MmapSink;
use hfd::storage::pwrite::PwriteSink;
use hfd::storage::{Allocation, Sink, alloc};

const STREAMS: u64 = 16;
const BATCH: u64 = 256 << 10;
const FRAME: usize = 16 << 10;
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Pwrite,
    Mmap,
}

#[derive(Clone, Copy)]
struct Variant {
    kind: Kind,
    alloc: Allocation,
}

impl Variant {
    fn name(&self) -> String {
        let k = match self.kind {
            Kind::Pwrite => "pwrite",
            Kind::Mmap => "mmap",
        };
        let a = match self.alloc {
            Allocation::Falloc => "falloc",
            Allocation::Trunc => "trunc",
            Allocation::None => "none",
        };
        format!("{k:6} {a:6}")
    }
}

/// One run's measurements.
#[derive(Clone, Copy, Default)]
struct Run {
    alloc_s: f64,
    write_s: f64,
    write_cpu: f64,
    sync_s: f64,
    total_cpu: f64,
    minflt: f64,
    rss_mib: f64,
}

fn rusage() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime) + t(ru.ru_stime), ru.ru_minflt as f64)
}

/// Mapped file pages resident in this process, MiB: `RssFile` plus
/// `RssShmem` (tmpfs pages are counted as the latter).
fn rss_file_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("RssFile:") + field("RssShmem:")) / 1024.0
}

fn run_once(dir: &Path, total: u64, v: Variant, frames: &[Bytes]) -> Run {
    let path = dir.join("hfd-bench-sink.part");
    let _ = std::fs::remove_file(&path);
    let (cpu0, flt0) = rusage();
    let t0 = Instant::now();
    let file = alloc::open_data_file(&path).expect("open");
    let used = alloc::allocate(&file, &path, total, v.alloc).expect("allocate");
    assert_eq!(used, v.alloc, "{dir:?} cannot {}", v.name());
    let alloc_s = t0.elapsed().as_secs_f64();
    let data = file.try_clone().expect("clone");
    let mut sink: Box<dyn Sink> = match v.kind {
        Kind::Pwrite => Box::new(PwriteSink::new(file)),
        Kind::Mmap => Box::new(MmapSink::new(file, Some(total)).expect("mmap")),
    };
    let (cpu1, _) = rusage();
    let t1 = Instant::now();
    let region = total / STREAMS;
    let batches = region / BATCH;
    for k in 0..batches {
        for s in 0..STREAMS {
            sink.write_at(s * region + k * BATCH, frames)
                .expect("write");
        }
    }
    let write_s = t1.elapsed().as_secs_f64();
    let (cpu2, flt2) = rusage();
    let rss_mib = rss_file_mib();
    let t2 = Instant::now();
    sink.flush().expect("flush");
    data.sync_data().expect("fdatasync");
    let sync_s = t2.elapsed().as_secs_f64();
    drop(sink);
    let (cpu3, _) = rusage();
    std::fs::remove_file(&path).expect("remove");
    Run {
        alloc_s,
        write_s,
        write_cpu: cpu2 - cpu1,
        sync_s,
        total_cpu: cpu3 - cpu0,
        minflt: flt2 - flt0,
        rss_mib,
    }
}

fn median(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn main() {
    let mib: u64 = std::env::var("HFD_BENCH_SINK_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    // Whole batches per region, so every variant writes the same bytes.
    let total = (mib << 20) / (STREAMS * BATCH) * (STREAMS * BATCH);
    let gib = total as f64 / (1u64 << 30) as f64;
    let disk: PathBuf = std::env::var_os("HFD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-sink"));
    std::fs::create_dir_all(&disk).expect("bench dir");
    let mut places = vec![("disk", disk)];
    if Path::new("/dev/shm").is_dir() {
        places.push(("tmpfs", PathBuf::from("/dev/shm")));
    }
    let frame_data = Bytes::from(vec![0x5au8; BATCH as usize]);
    let frames: Vec<Bytes> = (0..BATCH as usize / FRAME)
        .map(|i| frame_data.slice(i * FRAME..(i + 1) * FRAME))
        .collect();
    let variants = [
        Variant {
            kind: Kind::Pwrite,
            alloc: Allocation::Falloc,
        },
        Variant {
            kind: Kind::Mmap,
            alloc: Allocation::Falloc,
        },
        Variant {
            kind: Kind::Pwrite,
            alloc: Allocation::Trunc,
        },
    ];

    println!(
        "# sink benchmark: {} MiB, {STREAMS} interleaved streams, {} KiB batches of {} KiB frames, {ROUNDS} runs, median (min-max)",
        total >> 20,
        BATCH >> 10,
        FRAME >> 10
    );
    println!();
    println!(
        "| fs | sink | alloc s | write s | write GB/s | write CPU-s/GiB | fdatasync s | total s | total CPU-s/GiB | minor faults/GiB | mapped RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (fs_name, dir) in &places {
        let fstype = fs_type(dir);
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
        for round in 0..ROUNDS {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..variants.len()).collect()
            } else {
                (0..variants.len()).rev().collect()
            };
            for i in order {
                results[i].push(run_once(dir, total, variants[i], &frames));
            }
        }
        let mut medians = Vec::new();
        for (v, runs) in variants.iter().zip(&results) {
            let col = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
            let fmt = |(m, lo, hi): (f64, f64, f64)| format!("{m:.2} ({lo:.2}-{hi:.2})");
            let alloc_s = col(&|r| r.alloc_s);
            let write_s = col(&|r| r.write_s);
            let wcpu = col(&|r| r.write_cpu / gib);
            let sync_s = col(&|r| r.sync_s);
            let tot = col(&|r| r.alloc_s + r.write_s + r.sync_s);
            let tcpu = col(&|r| r.total_cpu / gib);
            let flt = col(&|r| r.minflt / gib);
            let rss = col(&|r| r.rss_mib);
            println!(
                "| {fs_name} ({fstype}) | {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.0} | {:.0} |",
                v.name(),
                fmt(alloc_s),
                fmt(write_s),
                total as f64 / write_s.0 / 1e9,
                fmt(wcpu),
                fmt(sync_s),
                fmt(tot),
                fmt(tcpu),
                flt.0,
                rss.0,
            );
            medians.push((write_s.0, wcpu.0, tot.0, tcpu.0));
        }
        let (p, m) = (medians[0], medians[1]);
        println!(
            "| {fs_name} | **mmap/pwrite (falloc)** | | **{:.2}x** | | **{:.2}x** | | **{:.2}x** | **{:.2}x** | | |",
            m.0 / p.0,
            m.1 / p.1,
            m.2 / p.2,
            m.3 / p.3
        );
    }
}

// f_type is i32 or i64 depending on the target.
#[allow(clippy::unnecessary_cast)]
fn fs_type(dir: &Path) -> String {
    match rustix::fs::statfs(dir) {
        Ok(st) => match st.f_type as i64 {
            0xEF53 => "ext4".into(),
            0x01021994 => "tmpfs".into(),
            0x9123683E => "btrfs".into(),
            0x58465342 => "xfs".into(),
            0x794c7630 => "overlay".into(),
            t => format!("fs {t:#x}"),
        },
        Err(_) => "?".into(),
    }
}
