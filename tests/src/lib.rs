//! murmur-tests: cross-crate integration tests (in `tests/tests/`) and the fault-injection
//! harness they and the daemon's process tests share.
//!
//! - [`mutate`]: a seeded frame mutator (bit flips, truncations, inflated varints, splices,
//!   random bytes) that turns a corpus of valid frames into hostile ones;
//! - [`relay`]: a seeded tokio TCP relay adding WAN delay (50 ms ± 10 ms) and cutting
//!   connections to model lost frames;
//! - [`netns`]: network namespaces joined by veth pairs and bridges, partitioned and healed
//!   with `ip link set … down/up`, removed on drop; skips loudly where namespaces are denied.
//!
//! The `netprobe` binary is a TCP echo server/client the namespace tests run inside the
//! namespaces.
//!
//! Tests that start real `murmur` processes live in `daemon/tests/`, where Cargo hands them
//! the built binary; they use this crate as a dev-dependency.

#![warn(missing_docs)]

pub mod mutate;
pub mod netns;
pub mod relay;
