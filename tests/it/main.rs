//! Integration tests: one binary (one link step), modules by subject.
//! Every test talks only to servers it starts on loopback.

mod adaptive;
mod cache;
mod cli;
mod control;
mod crash;
mod crash_hfd;
mod daily;
mod disk;
mod engine;
mod expiry;
mod faults;
mod fuzz_regressions;
mod generate;
mod hfd;
mod hfd_mirrors;
mod limits;
mod mirrors;
mod pipelining;
mod proxy;
mod security;
mod serve;
mod serve_upstream;
mod support;
mod tls;
mod wheel;
mod xet;
