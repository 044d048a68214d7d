//! Undirected and directed communication graphs over nodes `0..n`.
//!
//! Adjacency lists are kept sorted and free of self-loops and duplicates, so two graphs with
//! the same edges compare equal and every iteration order is deterministic.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Why a graph could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// An edge names a node outside `0..n`.
    #[error("edge ({a}, {b}) names a node outside 0..{n}")]
    NodeOutOfRange {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Number of nodes.
        n: usize,
    },
    /// A generator was given parameters it cannot honour.
    #[error("invalid parameters for {generator}: {reason}")]
    InvalidParameters {
        /// Which generator.
        generator: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A random generator kept producing disconnected graphs.
    #[error("{generator} produced no connected graph in {attempts} attempts")]
    NotConnected {
        /// Which generator.
        generator: &'static str,
        /// How many samples were drawn.
        attempts: usize,
    },
}

/// An undirected simple graph on nodes `0..n`. Serialized as `{"n": .., "edges": [[a, b], ..]}`
/// and rebuilt through [`Graph::from_edges`] when deserialized, so untrusted input cannot break
/// the sorted-adjacency invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EdgeList", try_from = "EdgeList")]
pub struct Graph {
    adjacency: Vec<Vec<usize>>,
}

impl Graph {
    /// A graph with `n` nodes and no edges.
    pub fn empty(n: usize) -> Self {
        Graph {
            adjacency: vec![Vec::new(); n],
        }
    }

    /// A graph from an edge list; self-loops are dropped and duplicates merged.
    pub fn from_edges(
        n: usize,
        edges: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<Self, GraphError> {
        let mut adjacency = vec![Vec::new(); n];
        for (a, b) in edges {
            if a >= n || b >= n {
                return Err(GraphError::NodeOutOfRange { a, b, n });
            }
            if a != b {
                adjacency[a].push(b);
                adjacency[b].push(a);
            }
        }
        for list in &mut adjacency {
            list.sort_unstable();
            list.dedup();
        }
        Ok(Graph { adjacency })
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.adjacency.len()
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.adjacency.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Sorted neighbours of `i`.
    pub fn neighbours(&self, i: usize) -> &[usize] {
        &self.adjacency[i]
    }

    /// Degree of `i`.
    pub fn degree(&self, i: usize) -> usize {
        self.adjacency[i].len()
    }

    /// Largest degree (0 for an empty graph).
    pub fn max_degree(&self) -> usize {
        self.adjacency.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Smallest degree (0 for an empty graph).
    pub fn min_degree(&self) -> usize {
        self.adjacency.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// Whether `{a, b}` is an edge.
    pub fn has_edge(&self, a: usize, b: usize) -> bool {
        a < self.n() && self.adjacency[a].binary_search(&b).is_ok()
    }

    /// Every edge once, as `(a, b)` with `a < b`, in lexicographic order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.adjacency
            .iter()
            .enumerate()
            .flat_map(|(a, list)| list.iter().filter(move |&&b| b > a).map(move |&b| (a, b)))
    }

    /// Component label of every node (labels `0..components`, in order of first node).
    pub fn components(&self) -> (usize, Vec<usize>) {
        let n = self.n();
        let mut label = vec![usize::MAX; n];
        let mut count = 0;
        let mut queue = VecDeque::new();
        for start in 0..n {
            if label[start] != usize::MAX {
                continue;
            }
            label[start] = count;
            queue.push_back(start);
            while let Some(u) = queue.pop_front() {
                for &v in &self.adjacency[u] {
                    if label[v] == usize::MAX {
                        label[v] = count;
                        queue.push_back(v);
                    }
                }
            }
            count += 1;
        }
        (count, label)
    }

    /// Whether every node reaches every other (true for `n <= 1`).
    pub fn is_connected(&self) -> bool {
        self.components().0 <= 1
    }

    /// Whether the edge relation is symmetric: `b ∈ N(a) ⇔ a ∈ N(b)`. Always true for graphs
    /// built through this type; exposed so tests of derived graphs can check it.
    pub fn is_symmetric(&self) -> bool {
        self.adjacency
            .iter()
            .enumerate()
            .all(|(a, list)| list.iter().all(|&b| self.has_edge(b, a)))
    }

    /// The directed graph with both orientations of every edge.
    pub fn to_directed(&self) -> DiGraph {
        DiGraph {
            out: self.adjacency.clone(),
        }
    }
}

/// A directed graph on nodes `0..n`: `out(i)` lists the nodes `i` sends to. Serialized as
/// `{"n": .., "edges": [[from, to], ..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EdgeList", try_from = "EdgeList")]
pub struct DiGraph {
    out: Vec<Vec<usize>>,
}

impl DiGraph {
    /// A directed graph from arcs `(from, to)`; self-loops are dropped and duplicates merged.
    pub fn from_arcs(
        n: usize,
        arcs: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<Self, GraphError> {
        let mut out = vec![Vec::new(); n];
        for (a, b) in arcs {
            if a >= n || b >= n {
                return Err(GraphError::NodeOutOfRange { a, b, n });
            }
            if a != b {
                out[a].push(b);
            }
        }
        for list in &mut out {
            list.sort_unstable();
            list.dedup();
        }
        Ok(DiGraph { out })
    }

    /// Static directed exponential graph (push-sum, SGP): `i → i + 2^k mod n` for `2^k < n`.
    pub fn exponential(n: usize) -> Self {
        let arcs = (0..n).flat_map(|i| powers_below(n).map(move |step| (i, (i + step) % n)));
        DiGraph::from_arcs(n, arcs).expect("arcs are in range")
    }

    /// One-peer exponential graph of round `t` (Ying et al. 2021): `i → i + 2^(t mod τ) mod n`
    /// with `τ = ⌈log2 n⌉`.
    pub fn one_peer_exponential(n: usize, t: u64) -> Self {
        let tau = ceil_log2(n).max(1);
        let step = 1usize << (t % tau as u64);
        let arcs = (0..n).map(|i| (i, (i + step) % n));
        DiGraph::from_arcs(n, arcs).expect("arcs are in range")
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.out.len()
    }

    /// Number of arcs.
    pub fn arc_count(&self) -> usize {
        self.out.iter().map(Vec::len).sum()
    }

    /// Sorted out-neighbours of `i` (the nodes `i` sends to).
    pub fn out_neighbours(&self, i: usize) -> &[usize] {
        &self.out[i]
    }

    /// In-neighbours of every node (the nodes each node receives from), sorted.
    pub fn in_neighbours(&self) -> Vec<Vec<usize>> {
        let mut inn = vec![Vec::new(); self.n()];
        for (a, list) in self.out.iter().enumerate() {
            for &b in list {
                inn[b].push(a);
            }
        }
        inn
    }

    /// Every arc `(from, to)` in lexicographic order.
    pub fn arcs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.out
            .iter()
            .enumerate()
            .flat_map(|(a, list)| list.iter().map(move |&b| (a, b)))
    }

    /// Whether every node reaches every other along arcs.
    pub fn is_strongly_connected(&self) -> bool {
        let n = self.n();
        if n <= 1 {
            return true;
        }
        let reaches_all = |adj: &[Vec<usize>]| {
            let mut seen = vec![false; n];
            seen[0] = true;
            let mut stack = vec![0];
            let mut count = 1;
            while let Some(u) = stack.pop() {
                for &v in &adj[u] {
                    if !seen[v] {
                        seen[v] = true;
                        count += 1;
                        stack.push(v);
                    }
                }
            }
            count == n
        };
        reaches_all(&self.out) && reaches_all(&self.in_neighbours())
    }

    /// The undirected graph that forgets arc directions.
    pub fn to_undirected(&self) -> Graph {
        Graph::from_edges(self.n(), self.arcs()).expect("arcs are in range")
    }
}

/// `⌈log2 n⌉` (0 for `n <= 1`).
pub fn ceil_log2(n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        (usize::BITS - (n - 1).leading_zeros()) as usize
    }
}

/// Powers of two strictly below `n`: 1, 2, 4, ...
pub(crate) fn powers_below(n: usize) -> impl Iterator<Item = usize> {
    (0..usize::BITS)
        .map(|k| 1usize << k)
        .take_while(move |&p| p < n)
}

/// Wire form of [`Graph`] and [`DiGraph`].
#[derive(Debug, Serialize, Deserialize)]
struct EdgeList {
    n: usize,
    edges: Vec<(usize, usize)>,
}

impl From<Graph> for EdgeList {
    fn from(g: Graph) -> Self {
        EdgeList {
            n: g.n(),
            edges: g.edges().collect(),
        }
    }
}

impl TryFrom<EdgeList> for Graph {
    type Error = GraphError;
    fn try_from(list: EdgeList) -> Result<Self, GraphError> {
        Graph::from_edges(list.n, list.edges)
    }
}

impl From<DiGraph> for EdgeList {
    fn from(g: DiGraph) -> Self {
        EdgeList {
            n: g.n(),
            edges: g.arcs().collect(),
        }
    }
}

impl TryFrom<EdgeList> for DiGraph {
    type Error = GraphError;
    fn try_from(list: EdgeList) -> Result<Self, GraphError> {
        DiGraph::from_arcs(list.n, list.edges)
    }
}
