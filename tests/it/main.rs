//! Integration tests: one binary (one link step), modules by subject.
//! Every test talks only to servers it starts on loopback.

mod cli;
mod crash;
mod disk;
mod engine;
mod faults;
mod hfd;
mod support;
mod tls;
