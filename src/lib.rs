//! hfd: a fast, crash-safe segmented downloader.

pub mod cli;
pub mod engine;
pub mod exit;
pub mod extent;
pub mod hub;
pub mod mirrors;
pub mod net;
pub mod size;
pub mod storage;
pub mod testserver;
pub mod ui;
