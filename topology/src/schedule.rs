//! Who talks to whom in round `t`: static graphs and time-varying schedules.
//!
//! - one-peer exponential (Ying et al., NeurIPS 2021): in round `t` node `i` sends to
//!   `i + 2^(t mod τ)`, `τ = ⌈log2 n⌉`, and both keep half; for `n` a power of two the product
//!   of `τ` consecutive rounds is exactly the averaging matrix `J / n`;
//! - epidemic (Epidemic Learning, de Vos et al., NeurIPS 2023): each round every peer sends to
//!   `s` peers drawn afresh (seeded per round), and each peer averages what it received with its
//!   own model (row stochastic).

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::graph::{DiGraph, Graph, ceil_log2};
use crate::mixing::{DirectedMixing, MixingMatrix};

/// The communication pattern of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The same undirected graph every round, with Metropolis–Hastings weights.
    Static(Graph),
    /// The same directed graph every round, with column-stochastic (push-sum) weights.
    Directed(DiGraph),
    /// One-peer exponential graph of round `t`.
    OnePeerExponential {
        /// Number of nodes.
        n: usize,
    },
    /// `s` fresh random targets per peer per round.
    Epidemic {
        /// Number of nodes.
        n: usize,
        /// Targets per peer per round.
        s: usize,
        /// Seed of the per-round draws.
        seed: u64,
    },
}

/// One round of a schedule: the arcs messages travel along and the weights receivers apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// `targets.out_neighbours(i)`: the peers `i` sends to this round.
    pub targets: DiGraph,
    /// `x ← P x` for this round.
    pub weights: DirectedMixing,
}

impl Schedule {
    /// Number of nodes.
    pub fn n(&self) -> usize {
        match self {
            Schedule::Static(g) => g.n(),
            Schedule::Directed(g) => g.n(),
            Schedule::OnePeerExponential { n } | Schedule::Epidemic { n, .. } => *n,
        }
    }

    /// Whether the graph changes from round to round.
    pub fn is_time_varying(&self) -> bool {
        matches!(
            self,
            Schedule::OnePeerExponential { .. } | Schedule::Epidemic { .. }
        )
    }

    /// Rounds after which the pattern repeats (`None` for the random epidemic schedule).
    pub fn period(&self) -> Option<u64> {
        match self {
            Schedule::Static(_) | Schedule::Directed(_) => Some(1),
            Schedule::OnePeerExponential { n } => Some(ceil_log2(*n).max(1) as u64),
            Schedule::Epidemic { .. } => None,
        }
    }

    /// The undirected graph of a static schedule.
    pub fn static_graph(&self) -> Option<&Graph> {
        match self {
            Schedule::Static(g) => Some(g),
            _ => None,
        }
    }

    /// Metropolis–Hastings weights of a static undirected schedule.
    pub fn static_mixing(&self) -> Option<MixingMatrix> {
        self.static_graph().map(MixingMatrix::metropolis_hastings)
    }

    /// Targets and weights of round `t`.
    pub fn round(&self, t: u64) -> Round {
        match self {
            Schedule::Static(g) => Round {
                targets: g.to_directed(),
                weights: DirectedMixing::from_symmetric(&MixingMatrix::metropolis_hastings(g)),
            },
            Schedule::Directed(g) => Round {
                targets: g.clone(),
                weights: DirectedMixing::column_stochastic(g),
            },
            Schedule::OnePeerExponential { n } => {
                let targets = DiGraph::one_peer_exponential(*n, t);
                // In- and out-degree are both one, so these weights (1/2, 1/2) are doubly
                // stochastic.
                let weights = DirectedMixing::row_stochastic(&targets);
                Round { targets, weights }
            }
            Schedule::Epidemic { n, s, seed } => {
                let targets = epidemic_targets(*n, *s, *seed, t);
                let weights = DirectedMixing::row_stochastic(&targets);
                Round { targets, weights }
            }
        }
    }
}

/// Round `t` of the epidemic schedule: every node draws `min(s, n − 1)` distinct targets other
/// than itself. Each round has its own ChaCha stream, so round `t` needs no earlier rounds.
pub fn epidemic_targets(n: usize, s: usize, seed: u64, t: u64) -> DiGraph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(t);
    let s = s.min(n.saturating_sub(1));
    let mut arcs = Vec::with_capacity(n * s);
    for i in 0..n {
        for pick in sample(&mut rng, n - 1, s) {
            // Indices 0..n-1 skip i.
            let j = if pick >= i { pick + 1 } else { pick };
            arcs.push((i, j));
        }
    }
    DiGraph::from_arcs(n, arcs).expect("targets are in range")
}
