//! Communication graphs for murmur: the graphs the decentralized-learning literature compares,
//! the mixing weights that make gossip average correctly, the spectral gap that predicts how
//! fast it does, and the rule by which a live peer picks its neighbours with no coordinator.
//!
//! - [`graph`] / [`generators`]: [`Graph`] (undirected) and [`DiGraph`] with ring, torus,
//!   exponential, hypercube, random regular, Erdős–Rényi, complete, star and small-world
//!   generators.
//! - [`mixing`]: [`MixingMatrix`] (Metropolis–Hastings, max-degree, lazy) and
//!   [`DirectedMixing`] (row/column stochastic), with validators naming what is wrong.
//! - [`spectral`]: `δ = 1 − max(|λ2|, |λn|)`, dense for small `n`, Lanczos beyond;
//!   [`closed_form`] holds the reference values for structured graphs.
//! - [`schedule`] / [`spec`]: time-varying schedules (one-peer exponential, epidemic) and the
//!   textual [`TopologySpec`] ("ring", "random-regular:4", ...).
//! - [`neighbour`] / [`agreement`]: live neighbour choice over a peer's view, and the sans-IO
//!   handshake that keeps every edge agreed by both of its ends (or by neither) through lost
//!   frames, duplicate connections and restarts.
//! - [`export`]: DOT and JSON, and [`describe`] for the `murmur-sim topology` command.

#![warn(missing_docs)]

pub mod agreement;
pub mod closed_form;
pub mod export;
pub mod generators;
pub mod graph;
pub mod mixing;
pub mod neighbour;
pub mod schedule;
pub mod spec;
pub mod spectral;

pub use agreement::{
    AgreementAction, AgreementConfig, EdgeAgreement, GossipVerdict, Select, Version,
};
pub use export::{Format, describe, describe_as};
pub use neighbour::{NeighbourRule, ViewGraph, ring_position};
pub use schedule::{Round, Schedule};
pub use spec::{SpecError, TopologySpec};

pub use graph::{DiGraph, Graph, GraphError};
pub use mixing::{DirectedMixing, MixingError, MixingMatrix, Stochasticity, metropolis_weight};
pub use spectral::Spectrum;
