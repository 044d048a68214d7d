//! murmur-tests: cross-crate integration tests (in `tests/tests/`) and the fault-injection
//! harness they and the daemon's process tests share.
//!
//! - [`mutate`]: a seeded frame mutator (bit flips, truncations, inflated varints, splices,
//!   random bytes) that turns a corpus of valid frames into hostile ones.
//!
//! Tests that start real `murmur` processes live in `daemon/tests/`, where Cargo hands them
//! the built binary; they use this crate as a dev-dependency.

pub mod mutate;
