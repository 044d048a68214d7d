//! `murmur-sim`: thousands of unmodified murmur gossip peers in one process, over a
//! simulated network with a virtual clock, reproducibly.
//!
//! - [`engine`]: the discrete-event engine (event heap ordered by (time, sequence), virtual
//!   clock in microseconds, peers driven through `Peer::handle`), parallel compute batches
//!   that keep results bit-identical on any number of threads.
//! - [`network`]: per-link latency distributions, uplink bandwidth, loss, reordering.
//! - [`compute`]: per-peer compute speed and stragglers.
//! - [`links`]: the connection layer under the gossip (dial races, duplicate connections,
//!   lost frames, resets) driving the daemon's edge agreement, to test it at scale.
//! - [`faults`]: churn (leave, crash, restart from checkpoint, join) and partitions.
//! - [`adversary`]: hostile peers (huge or non-finite values, wrong dimension, replays,
//!   floods).
//! - [`scenario`]: the TOML scenario format, the all-reduce and D-PSGD baselines.
//! - [`ring`]: the all-reduce baseline's clock (ring all-reduce time on the simulated network).
//! - [`experiment`]: sweeps over scenario variants with CSV tables and PNG plots.
//! - [`metrics`]: the per-tick metric rows and their CSV / JSON-lines writer.
//! - [`bench`]: the throughput benchmark (peers × parameters × rounds per second).
//! - [`topo`]: from a topology spec to the edges, the push-sum schedule and the spectral gap.
//! - [`plot`]: PNG line and scatter plots (bundled font, no system libraries).

#![warn(missing_docs)]

pub mod adversary;
pub mod bench;
pub mod compute;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod faults;
pub mod links;
pub mod metrics;
pub mod network;
pub mod plot;
pub mod ring;
pub mod scenario;
pub mod topo;
