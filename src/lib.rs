//! hfd: a fast, crash-safe segmented downloader.

pub mod exit;
pub mod extent;
pub mod size;
pub mod storage;
pub mod testserver;
