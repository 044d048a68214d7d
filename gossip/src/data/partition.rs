//! Dealing a dataset out to peers: IID, Dirichlet(α) label skew (Hsu et al. 2019, "Measuring
//! the effects of non-identical data distribution"), label-sorted shards (McMahan et al. 2017,
//! FedAvg's pathological non-IID split) and plain contiguous blocks.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use super::Dataset;

/// How samples are dealt to peers.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Partition {
    /// Shuffled and dealt in equal blocks: every peer sees the same distribution.
    #[default]
    Iid,
    /// For each class, the share of each peer is drawn from Dirichlet(α): small α (0.1) gives
    /// peers dominated by one or two classes, large α (100) is nearly IID. Regression targets
    /// are binned into 10 quantiles that play the role of classes.
    Dirichlet {
        /// Concentration, > 0.
        alpha: f64,
    },
    /// Samples sorted by label, cut into `peers × per_peer` contiguous shards, each peer
    /// gets `per_peer` shards at random: at most about `2 × per_peer` classes per peer.
    Shards {
        /// Shards per peer, ≥ 1.
        per_peer: usize,
    },
    /// Peer `i` gets the `i`-th contiguous block of the dataset in its stored order (a
    /// grouped synthetic set gives peer `i` group `i` when groups = peers).
    Contiguous,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partition::Shards { per_peer } => write!(f, "shards:{per_peer}"),
            Partition::Contiguous => write!(f, "contiguous"),
        }
    }
}

impl FromStr for Partition {
    type Err = String;

    /// `iid`, `dirichlet:0.5`, `shards:2`, `contiguous`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let bad = || {
            format!("bad partition {s:?}: expected iid, dirichlet:ALPHA, shards:K or contiguous")
        };
        match (name, arg) {
            ("iid", None) => Ok(Partition::Iid),
            ("contiguous", None) => Ok(Partition::Contiguous),
            ("dirichlet", Some(a)) => {
                let alpha: f64 = a.parse().map_err(|_| bad())?;
                if !(alpha > 0.0 && alpha.is_finite()) {
                    return Err(format!("dirichlet alpha must be > 0, got {a}"));
                }
                Ok(Partition::Dirichlet { alpha })
            }
            ("shards", Some(a)) => {
                let per_peer: usize = a.parse().map_err(|_| bad())?;
                if per_peer == 0 {
                    return Err("shards per peer must be >= 1".into());
                }
                Ok(Partition::Shards { per_peer })
            }
            _ => Err(bad()),
        }
    }
}

crate::data::serde_via_str!(Partition);

/// Deals the samples of `data` to `peers` peers; returns each peer's sample indices (sorted).
///
/// Every sample goes to exactly one peer and no peer is left empty (an empty Dirichlet draw
/// takes one sample from the largest peer). Panics if `peers == 0` or `peers > data.len()`.
pub fn partition(data: &Dataset, peers: usize, how: &Partition, seed: u64) -> Vec<Vec<usize>> {
    let n = data.len();
    assert!(peers > 0, "need at least one peer");
    assert!(peers <= n, "{peers} peers but only {n} samples");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shards: Vec<Vec<usize>> = match how {
        Partition::Iid => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            blocks(&order, peers)
        }
        Partition::Contiguous => blocks(&(0..n).collect::<Vec<_>>(), peers),
        Partition::Dirichlet { alpha } => dirichlet(data, peers, *alpha, &mut rng),
        Partition::Shards { per_peer } => {
            let per_peer = (*per_peer).max(1);
            let sorted = sorted_by_label(data);
            let count = (peers * per_peer).min(n);
            let mut pieces = blocks(&sorted, count);
            pieces.shuffle(&mut rng);
            let mut out = vec![Vec::new(); peers];
            for (k, piece) in pieces.into_iter().enumerate() {
                out[k % peers].extend(piece);
            }
            out
        }
    };
    fill_empty(&mut shards);
    for s in &mut shards {
        s.sort_unstable();
    }
    shards
}

/// Per-peer class histograms (classes, or the 10 quantile bins for regression).
pub fn label_histograms(data: &Dataset, shards: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let (labels, k) = class_ids(data);
    shards
        .iter()
        .map(|s| {
            let mut h = vec![0; k];
            for &i in s {
                h[labels[i]] += 1;
            }
            h
        })
        .collect()
}

/// Equal contiguous blocks of `order` (sizes differ by at most one).
fn blocks(order: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let n = order.len();
    (0..parts)
        .map(|p| order[p * n / parts..(p + 1) * n / parts].to_vec())
        .collect()
}

/// Class of every sample; regression targets become 10 quantile bins.
fn class_ids(data: &Dataset) -> (Vec<usize>, usize) {
    match data.classes {
        Some(k) => ((0..data.len()).map(|i| data.label(i)).collect(), k),
        None => {
            let bins = 10.min(data.len()).max(1);
            let mut order: Vec<usize> = (0..data.len()).collect();
            order.sort_by(|&a, &b| data.targets[a].total_cmp(&data.targets[b]));
            let mut ids = vec![0; data.len()];
            for (rank, &i) in order.iter().enumerate() {
                ids[i] = rank * bins / data.len();
            }
            (ids, bins)
        }
    }
}

fn sorted_by_label(data: &Dataset) -> Vec<usize> {
    let (labels, _) = class_ids(data);
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| (labels[i], i));
    order
}

fn dirichlet(data: &Dataset, peers: usize, alpha: f64, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let (labels, k) = class_ids(data);
    let gamma = Gamma::new(alpha, 1.0).expect("alpha > 0");
    let mut out = vec![Vec::new(); peers];
    for class in 0..k {
        let mut ids: Vec<usize> = (0..data.len()).filter(|&i| labels[i] == class).collect();
        ids.shuffle(rng);
        let mut w: Vec<f64> = (0..peers).map(|_| gamma.sample(rng)).collect();
        let total: f64 = w.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            // Every draw underflowed (tiny alpha): give the class to one peer at random.
            w.iter_mut().for_each(|x| *x = 0.0);
            w[rand::Rng::random_range(rng, 0..peers)] = 1.0;
        }
        let total: f64 = w.iter().sum();
        let (mut cum, mut start) = (0.0, 0);
        for (p, shard) in out.iter_mut().enumerate() {
            cum += w[p] / total;
            let end = if p == peers - 1 {
                ids.len()
            } else {
                ((cum * ids.len() as f64).round() as usize).clamp(start, ids.len())
            };
            shard.extend_from_slice(&ids[start..end]);
            start = end;
        }
    }
    out
}

/// Moves one sample from the largest shard into each empty one.
fn fill_empty(shards: &mut [Vec<usize>]) {
    for p in 0..shards.len() {
        if shards[p].is_empty() {
            let largest = (0..shards.len())
                .max_by_key(|&q| (shards[q].len(), std::cmp::Reverse(q)))
                .expect("at least one peer");
            let moved = shards[largest].pop().expect("n >= peers leaves a sample");
            shards[p].push(moved);
        }
    }
}
