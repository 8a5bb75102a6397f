//! Integration tests: one binary (one link step), modules by subject.
//! Every test talks only to servers it starts on loopback.

mod adaptive;
mod cli;
mod control;
mod crash;
mod crash_hfd;
mod disk;
mod engine;
mod faults;
mod fuzz_regressions;
mod hfd;
mod hfd_mirrors;
mod limits;
mod mirrors;
mod pipelining;
mod proxy;
mod security;
mod support;
mod tls;
mod xet;
