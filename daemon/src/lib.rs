//! The murmur daemon: a long-running libp2p node that trains a model on its own data shard and
//! averages it with its neighbours by compressed gossip (the sans-IO `murmur_gossip::peer`).
//!
//! - [`node`]: `murmur run`, wiring everything together;
//! - [`net`]: the swarm event loop (transports, discovery, live topology, access control);
//! - `nat`: relayed connections, relay reservations and what a relay may carry;
//! - [`wire`]: the `/murmur/gossip/1` frame codec;
//! - [`trainer`]: the training thread that owns the peer and its compute;
//! - [`checkpoint`]: atomic safetensors + metadata checkpoints;
//! - [`privacy`]: the ledger of the differential privacy a data directory's data spent;
//! - [`identity`]: the persistent key (0600) and the private-network key;
//! - [`preflight`]: the data-directory lock and the listen-port check;
//! - [`status`] and [`http`]: JSON status, Prometheus metrics and their endpoint;
//! - [`config`]: the TOML configuration; [`task`]: configuration → learner;
//! - [`demo`]: the one-command local swarm (and the process harness of the tests);
//! - `adversary`: a hostile node for robustness tests and demos only (`[testing]`): the core's
//!   frame rewriter, [`murmur_gossip::adversary`], the simulator's hostile peers use too.

#![warn(missing_docs)]

pub use murmur_gossip::adversary;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod http;
pub mod identity;
mod nat;
pub mod net;
pub mod node;
pub mod preflight;
pub mod privacy;
pub mod status;
pub mod task;
pub mod trainer;
pub mod wire;
