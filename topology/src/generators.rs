//! Generators for the graphs the decentralized-learning literature compares.
//!
//! Random generators take a seed and draw from `ChaCha8Rng::seed_from_u64(seed)`, so the same
//! seed gives the same graph on every platform. Generators that promise connectivity resample
//! until they get it (with a bounded number of attempts).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::graph::{Graph, GraphError, powers_below};

const MAX_ATTEMPTS: usize = 1000;

impl Graph {
    /// Cycle `i — i+1 mod n` (one edge for `n = 2`, none for `n <= 1`).
    pub fn ring(n: usize) -> Self {
        let edges = (0..n).map(|i| (i, (i + 1) % n));
        Graph::from_edges(n, edges).expect("edges are in range")
    }

    /// 2-D torus with `rows × cols` nodes; node `(r, c)` is `r * cols + c` and links to its four
    /// wrap-around grid neighbours (fewer when a side is 1 or 2).
    pub fn torus(rows: usize, cols: usize) -> Self {
        let n = rows * cols;
        let id = |r: usize, c: usize| r * cols + c;
        let edges = (0..rows).flat_map(|r| {
            (0..cols).flat_map(move |c| {
                [
                    (id(r, c), id(r, (c + 1) % cols)),
                    (id(r, c), id((r + 1) % rows, c)),
                ]
            })
        });
        Graph::from_edges(n, edges).expect("edges are in range")
    }

    /// Static exponential graph: `i — i ± 2^k mod n` for every `2^k < n`.
    pub fn exponential(n: usize) -> Self {
        let edges = (0..n).flat_map(|i| powers_below(n).map(move |step| (i, (i + step) % n)));
        Graph::from_edges(n, edges).expect("edges are in range")
    }

    /// Hypercube on `2^dim` nodes: `i — i xor 2^b`.
    pub fn hypercube(dim: u32) -> Self {
        let n = 1usize << dim;
        let edges = (0..n).flat_map(|i| (0..dim).map(move |b| (i, i ^ (1 << b))));
        Graph::from_edges(n, edges).expect("edges are in range")
    }

    /// Complete graph `K_n`.
    pub fn complete(n: usize) -> Self {
        let edges = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b)));
        Graph::from_edges(n, edges).expect("edges are in range")
    }

    /// Star with centre 0.
    pub fn star(n: usize) -> Self {
        Graph::from_edges(n, (1..n).map(|i| (0, i))).expect("edges are in range")
    }

    /// Uniform-ish connected random `k`-regular graph (pairing model with Steger–Wormald style
    /// rejection of loops and repeated edges; resampled until connected).
    pub fn random_regular(n: usize, k: usize, seed: u64) -> Result<Self, GraphError> {
        let invalid = |reason: String| GraphError::InvalidParameters {
            generator: "random_regular",
            reason,
        };
        if k >= n {
            return Err(invalid(format!("degree {k} needs more than {n} nodes")));
        }
        if (n * k) % 2 == 1 {
            return Err(invalid(format!("n*k = {} must be even", n * k)));
        }
        if k == 0 && n > 1 {
            return Err(invalid("degree 0 cannot be connected".into()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(graph) = try_pairing(n, k, &mut rng)
                && graph.is_connected()
            {
                return Ok(graph);
            }
        }
        Err(GraphError::NotConnected {
            generator: "random_regular",
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Erdős–Rényi `G(n, p)`, resampled until connected.
    pub fn erdos_renyi_connected(n: usize, p: f64, seed: u64) -> Result<Self, GraphError> {
        if !(p > 0.0 && p <= 1.0) {
            return Err(GraphError::InvalidParameters {
                generator: "erdos_renyi_connected",
                reason: format!("edge probability {p} must be in (0, 1]"),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..MAX_ATTEMPTS {
            let mut edges = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    if rng.random_bool(p) {
                        edges.push((a, b));
                    }
                }
            }
            let graph = Graph::from_edges(n, edges).expect("edges are in range");
            if graph.is_connected() {
                return Ok(graph);
            }
        }
        Err(GraphError::NotConnected {
            generator: "erdos_renyi_connected",
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Watts–Strogatz small world: a ring lattice where each node links to `k/2` nodes on each
    /// side, then each lattice edge `(i, i+j)` is rewired to a uniform random new endpoint with
    /// probability `beta`. Resampled until connected.
    pub fn small_world(n: usize, k: usize, beta: f64, seed: u64) -> Result<Self, GraphError> {
        let invalid = |reason: String| GraphError::InvalidParameters {
            generator: "small_world",
            reason,
        };
        if k % 2 == 1 || k == 0 {
            return Err(invalid(format!("k = {k} must be even and positive")));
        }
        if k >= n {
            return Err(invalid(format!("k = {k} must be below n = {n}")));
        }
        if !(0.0..=1.0).contains(&beta) {
            return Err(invalid(format!("beta = {beta} must be in [0, 1]")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..MAX_ATTEMPTS {
            let mut adjacency: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); n];
            for i in 0..n {
                for j in 1..=k / 2 {
                    let b = (i + j) % n;
                    adjacency[i].insert(b);
                    adjacency[b].insert(i);
                }
            }
            for j in 1..=k / 2 {
                for i in 0..n {
                    let b = (i + j) % n;
                    if !rng.random_bool(beta) || adjacency[i].len() >= n - 1 {
                        continue;
                    }
                    let target = loop {
                        let t = rng.random_range(0..n);
                        if t != i && !adjacency[i].contains(&t) {
                            break t;
                        }
                    };
                    adjacency[i].remove(&b);
                    adjacency[b].remove(&i);
                    adjacency[i].insert(target);
                    adjacency[target].insert(i);
                }
            }
            let edges = adjacency
                .iter()
                .enumerate()
                .flat_map(|(a, set)| set.iter().map(move |&b| (a, b)));
            let graph = Graph::from_edges(n, edges).expect("edges are in range");
            if graph.is_connected() {
                return Ok(graph);
            }
        }
        Err(GraphError::NotConnected {
            generator: "small_world",
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// One attempt of the pairing model: repeatedly join two random free half-edges of different,
/// not yet adjacent nodes. Returns `None` when it gets stuck.
fn try_pairing(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Option<Graph> {
    let mut points: Vec<usize> = (0..n).flat_map(|v| std::iter::repeat_n(v, k)).collect();
    points.shuffle(rng);
    let mut adjacency: Vec<Vec<usize>> = vec![Vec::with_capacity(k); n];
    let mut edges = Vec::with_capacity(n * k / 2);
    while !points.is_empty() {
        let mut placed = false;
        // Random tries first; a full scan decides whether any valid pair is left.
        for _ in 0..50 {
            let i = rng.random_range(0..points.len());
            let j = rng.random_range(0..points.len());
            let (a, b) = (points[i], points[j]);
            if i != j && a != b && !adjacency[a].contains(&b) {
                remove_two(&mut points, i, j);
                adjacency[a].push(b);
                adjacency[b].push(a);
                edges.push((a, b));
                placed = true;
                break;
            }
        }
        if !placed {
            let len = points.len();
            let pair = (0..len).find_map(|i| {
                (i + 1..len).find_map(|j| {
                    let (a, b) = (points[i], points[j]);
                    (a != b && !adjacency[a].contains(&b)).then_some((i, j))
                })
            });
            let (i, j) = pair?;
            let (a, b) = (points[i], points[j]);
            remove_two(&mut points, i, j);
            adjacency[a].push(b);
            adjacency[b].push(a);
            edges.push((a, b));
        }
    }
    Some(Graph::from_edges(n, edges).expect("edges are in range"))
}

fn remove_two(points: &mut Vec<usize>, i: usize, j: usize) {
    let (hi, lo) = if i > j { (i, j) } else { (j, i) };
    points.swap_remove(hi);
    points.swap_remove(lo);
}
