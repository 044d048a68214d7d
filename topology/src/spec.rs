//! [`TopologySpec`]: a topology named in one short string, as configs and command lines do.
//!
//! | string | topology |
//! |---|---|
//! | `ring` | cycle |
//! | `torus` | 2-D torus, `rows × cols` the most nearly square factorization of `n` |
//! | `exponential` | static exponential graph `i ± 2^k` |
//! | `directed-exponential` | `i → i + 2^k` with push-sum weights |
//! | `one-peer-exponential` | time-varying, `i → i + 2^(t mod log2 n)` |
//! | `random-regular:K` | connected random `K`-regular graph |
//! | `complete`, `star` (centre 0) | |
//! | `small-world:K:BETA` | Watts–Strogatz |
//! | `hypercube` | needs `n` a power of two |
//! | `erdos-renyi:P` | connected `G(n, P)` |
//! | `epidemic:S` | `S` fresh random targets per peer per round |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::graph::{DiGraph, Graph, GraphError};
use crate::schedule::Schedule;

/// A named topology family; [`TopologySpec::build`] instantiates it for `n` peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TopologySpec {
    /// Cycle.
    Ring,
    /// Nearly square 2-D torus.
    Torus,
    /// Static exponential graph `i ± 2^k`.
    Exponential,
    /// Directed exponential graph `i → i + 2^k` (push-sum).
    DirectedExponential,
    /// Time-varying one-peer exponential graph.
    OnePeerExponential,
    /// Connected random `k`-regular graph.
    RandomRegular {
        /// Degree.
        k: usize,
    },
    /// Complete graph.
    Complete,
    /// Star with centre 0.
    Star,
    /// Watts–Strogatz small world.
    SmallWorld {
        /// Lattice degree (even).
        k: usize,
        /// Rewiring probability.
        beta: f64,
    },
    /// Hypercube (`n` a power of two).
    Hypercube,
    /// Connected Erdős–Rényi graph.
    ErdosRenyi {
        /// Edge probability.
        p: f64,
    },
    /// Epidemic learning: `s` fresh random targets per round.
    Epidemic {
        /// Targets per peer per round.
        s: usize,
    },
}

/// Why a spec could not be parsed or built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The string names no topology.
    #[error("unknown topology {0:?} (try: {examples})", examples = TopologySpec::EXAMPLES.join(", "))]
    Unknown(String),
    /// A parameter did not parse.
    #[error("bad parameter in topology {spec:?}: {reason}")]
    BadParameter {
        /// The spec string.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The topology does not exist for this `n`.
    #[error("topology {spec} cannot have {n} nodes: {reason}")]
    BadSize {
        /// The spec.
        spec: String,
        /// Requested nodes.
        n: usize,
        /// Why not.
        reason: String,
    },
    /// The generator failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl TopologySpec {
    /// One example string of every family.
    pub const EXAMPLES: &'static [&'static str] = &[
        "ring",
        "torus",
        "exponential",
        "directed-exponential",
        "one-peer-exponential",
        "random-regular:4",
        "complete",
        "star",
        "small-world:4:0.1",
        "hypercube",
        "erdos-renyi:0.1",
        "epidemic:3",
    ];

    /// Whether the graph changes between rounds.
    pub fn is_time_varying(&self) -> bool {
        matches!(
            self,
            TopologySpec::OnePeerExponential | TopologySpec::Epidemic { .. }
        )
    }

    /// Instantiate for `n` nodes; `seed` drives the random families.
    pub fn build(&self, n: usize, seed: u64) -> Result<Schedule, SpecError> {
        let bad_size = |reason: &str| SpecError::BadSize {
            spec: self.to_string(),
            n,
            reason: reason.to_string(),
        };
        if n == 0 {
            return Err(bad_size("a topology needs at least one node"));
        }
        Ok(match self {
            TopologySpec::Ring => Schedule::Static(Graph::ring(n)),
            TopologySpec::Torus => {
                let (rows, cols) = near_square(n);
                Schedule::Static(Graph::torus(rows, cols))
            }
            TopologySpec::Exponential => Schedule::Static(Graph::exponential(n)),
            TopologySpec::DirectedExponential => Schedule::Directed(DiGraph::exponential(n)),
            TopologySpec::OnePeerExponential => Schedule::OnePeerExponential { n },
            TopologySpec::RandomRegular { k } => {
                Schedule::Static(Graph::random_regular(n, *k, seed)?)
            }
            TopologySpec::Complete => Schedule::Static(Graph::complete(n)),
            TopologySpec::Star => Schedule::Static(Graph::star(n)),
            TopologySpec::SmallWorld { k, beta } => {
                Schedule::Static(Graph::small_world(n, *k, *beta, seed)?)
            }
            TopologySpec::Hypercube => {
                if !n.is_power_of_two() {
                    return Err(bad_size("a hypercube needs a power of two"));
                }
                Schedule::Static(Graph::hypercube(n.trailing_zeros()))
            }
            TopologySpec::ErdosRenyi { p } => {
                Schedule::Static(Graph::erdos_renyi_connected(n, *p, seed)?)
            }
            TopologySpec::Epidemic { s } => {
                if *s == 0 {
                    return Err(bad_size("epidemic needs at least one target per round"));
                }
                Schedule::Epidemic { n, s: *s, seed }
            }
        })
    }

    /// Instantiate a static undirected graph (error for directed or time-varying specs).
    pub fn build_graph(&self, n: usize, seed: u64) -> Result<Graph, SpecError> {
        match self.build(n, seed)? {
            Schedule::Static(g) => Ok(g),
            _ => Err(SpecError::BadSize {
                spec: self.to_string(),
                n,
                reason: "not a static undirected graph".into(),
            }),
        }
    }
}

/// `rows × cols = n` with `rows ≤ cols` as close as possible (`1 × n` for a prime: a ring).
pub fn near_square(n: usize) -> (usize, usize) {
    let mut rows = (n as f64).sqrt() as usize;
    while rows > 1 && !n.is_multiple_of(rows) {
        rows -= 1;
    }
    let rows = rows.max(1);
    (rows, n / rows)
}

impl fmt::Display for TopologySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologySpec::Ring => write!(f, "ring"),
            TopologySpec::Torus => write!(f, "torus"),
            TopologySpec::Exponential => write!(f, "exponential"),
            TopologySpec::DirectedExponential => write!(f, "directed-exponential"),
            TopologySpec::OnePeerExponential => write!(f, "one-peer-exponential"),
            TopologySpec::RandomRegular { k } => write!(f, "random-regular:{k}"),
            TopologySpec::Complete => write!(f, "complete"),
            TopologySpec::Star => write!(f, "star"),
            TopologySpec::SmallWorld { k, beta } => write!(f, "small-world:{k}:{beta}"),
            TopologySpec::Hypercube => write!(f, "hypercube"),
            TopologySpec::ErdosRenyi { p } => write!(f, "erdos-renyi:{p}"),
            TopologySpec::Epidemic { s } => write!(f, "epidemic:{s}"),
        }
    }
}

impl FromStr for TopologySpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let text = text.trim();
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<&str> = parts.collect();
        let bad = |reason: String| SpecError::BadParameter {
            spec: text.to_string(),
            reason,
        };
        let arity = |want: usize| {
            if params.len() == want {
                Ok(())
            } else {
                Err(bad(format!(
                    "expected {want} parameter(s), got {}",
                    params.len()
                )))
            }
        };
        let int = |s: &str| {
            s.parse::<usize>()
                .map_err(|e| bad(format!("{s:?} is not a count: {e}")))
        };
        let prob = |s: &str| match s.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            Ok(p) => Err(bad(format!("{p} is not a probability"))),
            Err(e) => Err(bad(format!("{s:?} is not a number: {e}"))),
        };
        let spec = match name.as_str() {
            "ring" => arity(0).map(|_| TopologySpec::Ring),
            "torus" => arity(0).map(|_| TopologySpec::Torus),
            "exponential" => arity(0).map(|_| TopologySpec::Exponential),
            "directed-exponential" => arity(0).map(|_| TopologySpec::DirectedExponential),
            "one-peer-exponential" => arity(0).map(|_| TopologySpec::OnePeerExponential),
            "complete" => arity(0).map(|_| TopologySpec::Complete),
            "star" => arity(0).map(|_| TopologySpec::Star),
            "hypercube" => arity(0).map(|_| TopologySpec::Hypercube),
            "random-regular" => {
                arity(1).and_then(|_| Ok(TopologySpec::RandomRegular { k: int(params[0])? }))
            }
            "small-world" => arity(2).and_then(|_| {
                Ok(TopologySpec::SmallWorld {
                    k: int(params[0])?,
                    beta: prob(params[1])?,
                })
            }),
            "erdos-renyi" => arity(1).and_then(|_| {
                Ok(TopologySpec::ErdosRenyi {
                    p: prob(params[0])?,
                })
            }),
            "epidemic" => arity(1).and_then(|_| Ok(TopologySpec::Epidemic { s: int(params[0])? })),
            _ => Err(SpecError::Unknown(text.to_string())),
        }?;
        Ok(spec)
    }
}

impl TryFrom<String> for TopologySpec {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<TopologySpec> for String {
    fn from(spec: TopologySpec) -> String {
        spec.to_string()
    }
}
