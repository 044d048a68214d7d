//! Live neighbour choice with no coordinator.
//!
//! A peer knows a set of peer ids (its *view*, itself included). It places every peer on a
//! 64-bit hash ring (a hash that does not depend on platform or process, see
//! [`ring_position`]) and computes the **whole** undirected graph of the view with a
//! [`NeighbourRule`]; its neighbours are its own row. Two peers with the same view therefore
//! compute the same graph, and an edge is seen by both of its ends.
//!
//! Every rule is built from the same two layers:
//! 1. the hash ring itself (each peer linked to its successor and predecessor) — this makes
//!    every graph connected by construction;
//! 2. extra *candidate* edges: each peer's picks (Chord-like fingers or `k` random peers).
//!    Edges are the **union** of the picks — never the intersection: mutual random picks are
//!    rare and would leave the graph disconnected. A candidate edge is kept only when it ranks
//!    among the best `c` candidate edges of *both* its ends, which bounds every degree by
//!    [`NeighbourRule::max_degree`] with a decision that depends only on the two ends' picks
//!    (so a change of view only moves edges near the change).
//!
//! While views differ, the two ends of an edge may disagree about it; [`crate::agreement`]
//! runs the handshake that lets an edge carry gossip only once both ends chose it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::graph::{Graph, ceil_log2};

/// How a peer picks neighbours from its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NeighbourRule {
    /// Successor and predecessor on the hash ring (degree ≤ 2).
    Ring,
    /// Ring plus Chord-like fingers: for each level `ℓ`, the first peer at or after
    /// `position + 2^(64−ℓ)` (degree ≤ `2 + 4⌈log2 n⌉`; typical degree is about `2 log2 n`).
    Exponential,
    /// Ring plus `k` random peers per peer by seeded hash (rendezvous scores of the pair;
    /// degree ≤ `2 + 2k`).
    RandomK {
        /// Random picks per peer.
        k: usize,
    },
}

/// Why a rule string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown neighbour rule {0:?} (expected ring, exponential or random-k:K)")]
pub struct RuleParseError(pub String);

/// Domain separation for the random-pick scores.
const RANDOM_PICK_SALT: u64 = 0x6d75_726d_7572_6b31; // "murmurk1"

impl NeighbourRule {
    /// Largest degree this rule produces in a view of `n` peers.
    pub fn max_degree(&self, n: usize) -> usize {
        let bound = match self {
            NeighbourRule::Ring => 2,
            NeighbourRule::Exponential => 2 + self.extra_cap(n),
            NeighbourRule::RandomK { .. } => 2 + self.extra_cap(n),
        };
        bound.min(n.saturating_sub(1))
    }

    /// How many candidate edges beyond the ring a peer keeps at most.
    fn extra_cap(&self, n: usize) -> usize {
        match self {
            NeighbourRule::Ring => 0,
            // Twice the typical finger count: only peers behind unusually large gaps (which
            // attract many fingers) hit the cap, so the cap rarely decides an edge and a view
            // change moves about as few edges as uncapped Chord fingers would.
            NeighbourRule::Exponential => 4 * ceil_log2(n),
            NeighbourRule::RandomK { k } => 2 * k,
        }
    }

    /// The graph every peer with this view computes.
    pub fn graph<K: Hash + Ord + Clone>(&self, view: &BTreeSet<K>) -> ViewGraph<K> {
        let mut placed: Vec<(u64, K)> =
            view.iter().map(|k| (ring_position(k), k.clone())).collect();
        placed.sort();
        let positions: Vec<u64> = placed.iter().map(|(p, _)| *p).collect();
        let peers: Vec<K> = placed.into_iter().map(|(_, k)| k).collect();
        let n = peers.len();

        let ring_edges = (0..n).map(|i| (i, (i + 1) % n));
        let mut graph_edges: Vec<(usize, usize)> = ring_edges.collect();

        // Candidate extra edges with a rank key per end (smaller is preferred).
        let candidates: Vec<(usize, usize, u64)> = match self {
            NeighbourRule::Ring => Vec::new(),
            NeighbourRule::Exponential => finger_candidates(&positions),
            NeighbourRule::RandomK { k } => random_candidates(&positions, *k),
        };
        let cap = self.extra_cap(n);
        let is_ring_edge = |a: usize, b: usize| (a + 1) % n == b || (b + 1) % n == a;
        // Merge duplicates (picked by both ends): keep the better key.
        let mut best: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for (a, b, key) in candidates {
            if a == b || is_ring_edge(a, b) {
                continue;
            }
            let e = (a.min(b), a.max(b));
            let slot = best.entry(e).or_insert(key);
            *slot = (*slot).min(key);
        }
        // Rank each node's incident candidates; keep an edge in both ends' top `cap`.
        let mut incident: Vec<Vec<(u64, usize)>> = vec![Vec::new(); n];
        for (&(a, b), &key) in &best {
            incident[a].push((key, b));
            incident[b].push((key, a));
        }
        let mut top: Vec<BTreeSet<usize>> = Vec::with_capacity(n);
        for list in &mut incident {
            list.sort_unstable();
            top.push(list.iter().take(cap).map(|&(_, other)| other).collect());
        }
        for &(a, b) in best.keys() {
            if top[a].contains(&b) && top[b].contains(&a) {
                graph_edges.push((a, b));
            }
        }
        let graph = Graph::from_edges(n, graph_edges).expect("indices are in range");
        let index = peers
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        ViewGraph {
            peers,
            positions,
            graph,
            index,
        }
    }

    /// Neighbours of `me` when it knows `known` (with or without itself).
    pub fn neighbours<K: Hash + Ord + Clone>(&self, me: &K, known: &BTreeSet<K>) -> BTreeSet<K> {
        let mut view = known.clone();
        view.insert(me.clone());
        self.graph(&view).neighbours_of(me)
    }
}

/// Fingers of every peer: `(from, to, level)`; level 1 is the half-ring finger, so long
/// fingers rank first.
fn finger_candidates(positions: &[u64]) -> Vec<(usize, usize, u64)> {
    let n = positions.len();
    let mut out = Vec::new();
    if n < 3 {
        return out;
    }
    for (i, &h) in positions.iter().enumerate() {
        let successor_of_i = (i + 1) % n;
        let mut previous = usize::MAX;
        for level in 1..64u32 {
            let target = h.wrapping_add(1u64 << (64 - level));
            let j = successor_index(positions, target);
            if j == successor_of_i {
                break; // every shorter finger is the ring successor too
            }
            if j != i && j != previous {
                out.push((i, j, u64::from(level)));
                previous = j;
            }
        }
    }
    out
}

/// First index whose position is `>= target`, wrapping to 0.
fn successor_index(positions: &[u64], target: u64) -> usize {
    let i = positions.partition_point(|&p| p < target);
    if i == positions.len() { 0 } else { i }
}

/// Every peer's `k` random picks: the peers with the smallest symmetric pair score.
fn random_candidates(positions: &[u64], k: usize) -> Vec<(usize, usize, u64)> {
    let n = positions.len();
    let k = k.min(n.saturating_sub(1));
    let mut out = Vec::with_capacity(n * k);
    let mut scores: Vec<(u64, usize)> = Vec::with_capacity(n);
    for (i, &hi) in positions.iter().enumerate() {
        scores.clear();
        scores.extend(
            positions
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &hj)| (pair_score(hi, hj), j)),
        );
        if k == 0 {
            continue;
        }
        scores.select_nth_unstable(k - 1);
        out.extend(scores[..k].iter().map(|&(score, j)| (i, j, score)));
    }
    out
}

/// Symmetric seeded score of a pair of ring positions.
fn pair_score(a: u64, b: u64) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix64(mix64(lo ^ RANDOM_PICK_SALT) ^ hi)
}

/// The graph of one view: peers in ring order and the undirected graph over their indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewGraph<K> {
    peers: Vec<K>,
    positions: Vec<u64>,
    graph: Graph,
    index: BTreeMap<K, usize>,
}

impl<K: Ord + Clone> ViewGraph<K> {
    /// Peers in ring order (index `i` of [`ViewGraph::graph`] is `peers()[i]`).
    pub fn peers(&self) -> &[K] {
        &self.peers
    }

    /// Ring position of each peer, ascending.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// The undirected graph over ring indices.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Ring index of a peer.
    pub fn index_of(&self, peer: &K) -> Option<usize> {
        self.index.get(peer).copied()
    }

    /// Neighbours of `peer` (empty when it is not in the view).
    pub fn neighbours_of(&self, peer: &K) -> BTreeSet<K> {
        self.index_of(peer)
            .map(|i| {
                self.graph
                    .neighbours(i)
                    .iter()
                    .map(|&j| self.peers[j].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every edge as an ordered pair `(smaller, larger)` of peer ids.
    pub fn edge_set(&self) -> BTreeSet<(K, K)> {
        self.graph
            .edges()
            .map(|(a, b)| {
                let (x, y) = (self.peers[a].clone(), self.peers[b].clone());
                if x <= y { (x, y) } else { (y, x) }
            })
            .collect()
    }
}

/// Position of a peer id on the 64-bit ring: FNV-1a over the id's `Hash` bytes (integers fed
/// little-endian, `usize` as 64 bits) with a SplitMix64 finalizer. Unlike `DefaultHasher` it
/// is fixed across platforms and processes, so peers built differently agree. The bytes are
/// whatever the id's `Hash` impl feeds; for ids from the network, use their canonical byte
/// form (e.g. `Vec<u8>` of a libp2p `PeerId::to_bytes()`, or its base58 `String`), whose
/// `Hash` is a length prefix plus the bytes.
pub fn ring_position<K: Hash + ?Sized>(peer: &K) -> u64 {
    let mut hasher = StableHasher::default();
    peer.hash(&mut hasher);
    hasher.finish()
}

/// SplitMix64 finalizer: a bijective avalanche mix of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a with platform-independent integer encoding.
#[derive(Debug)]
struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write(&(i as u64).to_le_bytes());
    }
    fn write_i16(&mut self, i: i16) {
        self.write(&i.to_le_bytes());
    }
    fn write_i32(&mut self, i: i32) {
        self.write(&i.to_le_bytes());
    }
    fn write_i64(&mut self, i: i64) {
        self.write(&i.to_le_bytes());
    }
    fn write_i128(&mut self, i: i128) {
        self.write(&i.to_le_bytes());
    }
    fn write_isize(&mut self, i: isize) {
        self.write(&(i as i64).to_le_bytes());
    }
}

impl fmt::Display for NeighbourRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeighbourRule::Ring => write!(f, "ring"),
            NeighbourRule::Exponential => write!(f, "exponential"),
            NeighbourRule::RandomK { k } => write!(f, "random-k:{k}"),
        }
    }
}

impl FromStr for NeighbourRule {
    type Err = RuleParseError;
    fn from_str(s: &str) -> Result<Self, RuleParseError> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "ring" => return Ok(NeighbourRule::Ring),
            "exponential" | "chord" => return Ok(NeighbourRule::Exponential),
            _ => {}
        }
        let k = lower
            .strip_prefix("random-k:")
            .or_else(|| lower.strip_prefix("random:"))
            .and_then(|k| k.parse::<usize>().ok())
            .ok_or_else(|| RuleParseError(s.to_string()))?;
        Ok(NeighbourRule::RandomK { k })
    }
}

impl TryFrom<String> for NeighbourRule {
    type Error = RuleParseError;
    fn try_from(s: String) -> Result<Self, RuleParseError> {
        s.parse()
    }
}

impl From<NeighbourRule> for String {
    fn from(rule: NeighbourRule) -> String {
        rule.to_string()
    }
}
