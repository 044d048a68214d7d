//! The sans-IO murmur peer: everything a peer knows and decides, with no sockets, threads or
//! clocks of its own.
//!
//! Two halves live here (and [`consensus`], the consensus distance both drivers report):
//! - the learning core — [`data`] (loaders, bundled datasets, synthetic generators,
//!   partitioners), [`layout`] (which named tensor lives where in the flat vector), [`model`] (flat-parameter models with analytic gradients), [`optim`]
//!   (SGD with momentum and schedules, AdamW), [`train`] (the centralized reference trainer) and
//!   [`learner`] (the local step a peer takes between gossip rounds), and, with the `deep`
//!   feature (on by default), `deep` (a CNN and a transformer trained by autodiff in candle
//!   over the same flat parameter vector);
//! - the gossip state machine — [`message`] (the versioned wire messages) and [`peer`]
//!   (compressed gossip averaging of the CHOCO-SGD family, driven by `handle(now, input)`),
//!   with [`privacy`] (peer-level differential privacy of each round's update, and its
//!   accountant); [`seed`] derives every random stream's seed and [`settings`] reads `key=value`
//!   overrides, for both drivers.
//!
//! The daemon (tokio + libp2p) and the simulator (virtual clock) drive the very same
//! [`peer::Peer`], so a result measured in simulation predicts the daemon. The `testing`
//! feature adds what tests and experiments need and a library user does not: the lock-step
//! driver `peer::testing` and `adversary`, the frame rewriter both drivers' hostile peers use.

#![warn(missing_docs)]

#[cfg(feature = "testing")]
pub mod adversary;
pub mod consensus;
pub mod data;
#[cfg(feature = "deep")]
pub mod deep;
pub mod layout;
pub mod learner;
pub mod message;
pub mod model;
pub mod optim;
pub mod peer;
pub mod privacy;
pub mod seed;
pub mod settings;
pub mod task;
pub mod train;
