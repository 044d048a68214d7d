//! Mixing weights: the matrix `W` of one gossip step `x ← W x`.
//!
//! For undirected graphs [`MixingMatrix`] is symmetric and doubly stochastic, so exact gossip
//! preserves the average and converges to it at a rate set by the spectral gap. For directed
//! graphs [`DirectedMixing`] is row stochastic (each node averages what it receives) or column
//! stochastic (each node splits its mass, as push-sum needs).

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::graph::{DiGraph, Graph};

/// Default tolerance of the validators (absolute, on sums and on `w_ij − w_ji`).
pub const WEIGHT_TOLERANCE: f64 = 1e-12;

/// Metropolis–Hastings weight of an edge between nodes of degrees `deg_i` and `deg_j`:
/// `1 / (1 + max(deg_i, deg_j))`. A peer can compute it from its degree and the degree its
/// neighbour announces, with no global knowledge.
pub fn metropolis_weight(deg_i: usize, deg_j: usize) -> f64 {
    1.0 / (1.0 + deg_i.max(deg_j) as f64)
}

/// What a validator found wrong with a weight matrix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MixingError {
    /// `w_ij ≠ w_ji`.
    #[error("not symmetric: w[{i}][{j}] = {w_ij} but w[{j}][{i}] = {w_ji}")]
    NotSymmetric {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// `w_ij`.
        w_ij: f64,
        /// `w_ji`.
        w_ji: f64,
    },
    /// A row does not sum to one.
    #[error("not stochastic: row {row} sums to {sum}")]
    RowSum {
        /// Row.
        row: usize,
        /// Its sum.
        sum: f64,
    },
    /// A column does not sum to one.
    #[error("not stochastic: column {column} sums to {sum}")]
    ColumnSum {
        /// Column.
        column: usize,
        /// Its sum.
        sum: f64,
    },
    /// A weight is negative or not finite.
    #[error("not stochastic: w[{i}][{j}] = {w} is negative or not finite")]
    BadEntry {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The weight.
        w: f64,
    },
    /// The support graph falls apart, so gossip cannot reach consensus.
    #[error("disconnected: the weights' support has {components} components")]
    Disconnected {
        /// Number of connected components.
        components: usize,
    },
    /// A directed support where some node cannot reach some other along arcs.
    #[error("disconnected: the directed support is not strongly connected")]
    NotStronglyConnected,
    /// Dimension mismatch.
    #[error("dimension mismatch: matrix is {n}×{n}, vector has {len} entries")]
    Dimension {
        /// Matrix size.
        n: usize,
        /// Vector length.
        len: usize,
    },
}

/// A symmetric mixing matrix on an undirected graph, stored sparsely: a self weight per node
/// and the weight of each incident edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixingMatrix {
    self_weight: Vec<f64>,
    /// `edges[i]` = `(j, w_ij)`, sorted by `j`, no `j == i`.
    edges: Vec<Vec<(usize, f64)>>,
}

impl MixingMatrix {
    /// Metropolis–Hastings weights `w_ij = 1 / (1 + max(d_i, d_j))`, `w_ii = 1 − Σ_j w_ij`.
    pub fn metropolis_hastings(graph: &Graph) -> Self {
        Self::from_edge_weights(graph, |i, j| {
            metropolis_weight(graph.degree(i), graph.degree(j))
        })
    }

    /// Uniform max-degree weights `w_ij = 1 / (1 + d_max)`, `w_ii = 1 − d_i / (1 + d_max)`.
    pub fn max_degree(graph: &Graph) -> Self {
        let w = 1.0 / (1.0 + graph.max_degree() as f64);
        Self::from_edge_weights(graph, |_, _| w)
    }

    /// Weights from a symmetric function of the edge; self weights make rows sum to one.
    pub fn from_edge_weights(graph: &Graph, weight: impl Fn(usize, usize) -> f64) -> Self {
        let edges: Vec<Vec<(usize, f64)>> = (0..graph.n())
            .map(|i| {
                graph
                    .neighbours(i)
                    .iter()
                    .map(|&j| (j, weight(i.min(j), i.max(j))))
                    .collect()
            })
            .collect();
        let self_weight = edges
            .iter()
            .map(|row| 1.0 - row.iter().map(|&(_, w)| w).sum::<f64>())
            .collect();
        MixingMatrix { self_weight, edges }
    }

    /// Build from explicit parts (not validated: call [`MixingMatrix::validate`]).
    pub fn from_parts(self_weight: Vec<f64>, mut edges: Vec<Vec<(usize, f64)>>) -> Self {
        for row in &mut edges {
            row.sort_by_key(|&(j, _)| j);
        }
        MixingMatrix { self_weight, edges }
    }

    /// From a dense matrix (off-diagonal zeros dropped; not validated).
    pub fn from_dense(m: &DMatrix<f64>) -> Self {
        let n = m.nrows();
        let self_weight = (0..n).map(|i| m[(i, i)]).collect();
        let edges = (0..n)
            .map(|i| {
                (0..m.ncols())
                    .filter(|&j| j != i && m[(i, j)] != 0.0)
                    .map(|j| (j, m[(i, j)]))
                    .collect()
            })
            .collect();
        MixingMatrix { self_weight, edges }
    }

    /// Lazy version `(I + W) / 2`: same fixed point, no eigenvalue below 0.
    pub fn lazy(&self) -> Self {
        MixingMatrix {
            self_weight: self.self_weight.iter().map(|w| 0.5 + 0.5 * w).collect(),
            edges: self
                .edges
                .iter()
                .map(|row| row.iter().map(|&(j, w)| (j, 0.5 * w)).collect())
                .collect(),
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.self_weight.len()
    }

    /// `w_ii`.
    pub fn self_weight(&self, i: usize) -> f64 {
        self.self_weight[i]
    }

    /// `(j, w_ij)` for the neighbours of `i`, sorted by `j`.
    pub fn row(&self, i: usize) -> &[(usize, f64)] {
        &self.edges[i]
    }

    /// `w_ij` (0 for non-edges).
    pub fn weight(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return self.self_weight[i];
        }
        match self.edges[i].binary_search_by_key(&j, |&(k, _)| k) {
            Ok(pos) => self.edges[i][pos].1,
            Err(_) => 0.0,
        }
    }

    /// Number of stored entries (diagonal plus both orientations of each edge).
    pub fn nnz(&self) -> usize {
        self.n() + self.edges.iter().map(Vec::len).sum::<usize>()
    }

    /// The support graph (edges with a stored weight).
    pub fn graph(&self) -> Graph {
        let edges = self
            .edges
            .iter()
            .enumerate()
            .flat_map(|(i, row)| row.iter().map(move |&(j, _)| (i, j)));
        Graph::from_edges(self.n(), edges).expect("weights index valid nodes")
    }

    /// Check symmetric, nonnegative, rows (hence columns) summing to one, connected support.
    pub fn validate(&self) -> Result<(), MixingError> {
        self.validate_with(WEIGHT_TOLERANCE)
    }

    /// [`MixingMatrix::validate`] with an explicit tolerance.
    pub fn validate_with(&self, tolerance: f64) -> Result<(), MixingError> {
        let n = self.n();
        if self.edges.len() != n {
            return Err(MixingError::Dimension {
                n,
                len: self.edges.len(),
            });
        }
        for i in 0..n {
            let w = self.self_weight[i];
            if !(w.is_finite() && w >= -tolerance) {
                return Err(MixingError::BadEntry { i, j: i, w });
            }
            for &(j, w) in &self.edges[i] {
                if j >= n {
                    return Err(MixingError::Dimension { n, len: j + 1 });
                }
                if !(w.is_finite() && w >= 0.0) {
                    return Err(MixingError::BadEntry { i, j, w });
                }
                let w_ji = self.weight(j, i);
                if (w - w_ji).abs() > tolerance {
                    return Err(MixingError::NotSymmetric {
                        i,
                        j,
                        w_ij: w,
                        w_ji,
                    });
                }
            }
            let sum = w + self.edges[i].iter().map(|&(_, w)| w).sum::<f64>();
            if (sum - 1.0).abs() > tolerance {
                return Err(MixingError::RowSum { row: i, sum });
            }
        }
        let components = self.positive_support().components().0;
        if components > 1 {
            return Err(MixingError::Disconnected { components });
        }
        Ok(())
    }

    fn positive_support(&self) -> Graph {
        let edges = self.edges.iter().enumerate().flat_map(|(i, row)| {
            row.iter()
                .filter(|&&(_, w)| w > 0.0)
                .map(move |&(j, _)| (i, j))
        });
        Graph::from_edges(self.n(), edges).expect("weights index valid nodes")
    }

    /// One exact gossip step `W x`.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        self.apply_into(x, &mut out);
        out
    }

    /// `out = W x` without allocating. Panics if lengths differ from `n`.
    pub fn apply_into(&self, x: &[f64], out: &mut [f64]) {
        assert_eq!(x.len(), self.n(), "vector length must equal n");
        assert_eq!(out.len(), self.n(), "output length must equal n");
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.self_weight[i] * x[i]
                + self.edges[i].iter().map(|&(j, w)| w * x[j]).sum::<f64>();
        }
    }

    /// `out = (I − W) x` computed as `Σ_j w_ij (x_i − x_j)`: exact differences keep relative
    /// accuracy for the smooth vectors that decide a small spectral gap. Assumes rows sum to 1.
    pub fn apply_laplacian_into(&self, x: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.edges[i].iter().map(|&(j, w)| w * (x[i] - x[j])).sum();
        }
    }

    /// Dense `n × n` copy.
    pub fn to_dense(&self) -> DMatrix<f64> {
        let n = self.n();
        let mut m = DMatrix::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = self.self_weight[i];
            for &(j, w) in &self.edges[i] {
                m[(i, j)] = w;
            }
        }
        m
    }

    /// Dense `I − W` with the diagonal formed as `Σ_j w_ij` (no cancellation against 1).
    pub fn laplacian_dense(&self) -> DMatrix<f64> {
        let n = self.n();
        let mut m = DMatrix::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = self.edges[i].iter().map(|&(_, w)| w).sum::<f64>();
            for &(j, w) in &self.edges[i] {
                m[(i, j)] = -w;
            }
        }
        m
    }

    /// Spectral gap `δ = 1 − max(|λ2|, |λn|)`; see [`crate::spectral`] for the method.
    pub fn spectral_gap(&self) -> Result<f64, MixingError> {
        crate::spectral::spectrum(self).map(|s| s.gap)
    }
}

/// Which sums a directed weight matrix keeps at one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stochasticity {
    /// Rows sum to one: `x_i ← Σ_j p_ij x_j` is a weighted average of what `i` receives.
    Row,
    /// Columns sum to one: node `j` splits its mass (push-sum keeps the total).
    Column,
    /// Both.
    Doubly,
}

/// Weights on a directed graph: `x ← P x` with `p_ij` the weight node `i` gives to the value it
/// receives from `j` (an arc `j → i`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectedMixing {
    /// `rows[i]` = `(j, p_ij)` including `j == i`, sorted by `j`.
    rows: Vec<Vec<(usize, f64)>>,
    stochasticity: Stochasticity,
}

impl DirectedMixing {
    /// Row-stochastic weights: every node averages itself and its in-neighbours equally.
    pub fn row_stochastic(graph: &DiGraph) -> Self {
        let inn = graph.in_neighbours();
        let rows = inn
            .iter()
            .enumerate()
            .map(|(i, senders)| {
                let w = 1.0 / (1.0 + senders.len() as f64);
                let mut row: Vec<(usize, f64)> = senders.iter().map(|&j| (j, w)).collect();
                row.push((i, w));
                row.sort_by_key(|&(j, _)| j);
                row
            })
            .collect();
        Self::with_kind(rows, Stochasticity::Row)
    }

    /// Column-stochastic (push-sum) weights: every node keeps `1 / (1 + out)` of its mass and
    /// sends the same share to each out-neighbour.
    pub fn column_stochastic(graph: &DiGraph) -> Self {
        let n = graph.n();
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for j in 0..n {
            let out = graph.out_neighbours(j);
            let w = 1.0 / (1.0 + out.len() as f64);
            rows[j].push((j, w));
            for &i in out {
                rows[i].push((j, w));
            }
        }
        for row in &mut rows {
            row.sort_by_key(|&(j, _)| j);
        }
        Self::with_kind(rows, Stochasticity::Column)
    }

    /// The directed view of a symmetric matrix (doubly stochastic).
    pub fn from_symmetric(w: &MixingMatrix) -> Self {
        let rows = (0..w.n())
            .map(|i| {
                let mut row: Vec<(usize, f64)> = w.row(i).to_vec();
                row.push((i, w.self_weight(i)));
                row.sort_by_key(|&(j, _)| j);
                row
            })
            .collect();
        Self::with_kind(rows, Stochasticity::Doubly)
    }

    fn with_kind(rows: Vec<Vec<(usize, f64)>>, intended: Stochasticity) -> Self {
        let mut m = DirectedMixing {
            rows,
            stochasticity: intended,
        };
        // Upgrade to Doubly when the other sums happen to be one too (e.g. one-peer graphs).
        if m.check(Stochasticity::Doubly, WEIGHT_TOLERANCE).is_ok() {
            m.stochasticity = Stochasticity::Doubly;
        }
        m
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.rows.len()
    }

    /// The sums this matrix was built to keep at one.
    pub fn stochasticity(&self) -> Stochasticity {
        self.stochasticity
    }

    /// `(j, p_ij)` of row `i`, including the self weight, sorted by `j`.
    pub fn row(&self, i: usize) -> &[(usize, f64)] {
        &self.rows[i]
    }

    /// `x ← P x`.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.n(), "vector length must equal n");
        self.rows
            .iter()
            .map(|row| row.iter().map(|&(j, w)| w * x[j]).sum())
            .collect()
    }

    /// Dense copy.
    pub fn to_dense(&self) -> DMatrix<f64> {
        let n = self.n();
        let mut m = DMatrix::zeros(n, n);
        for (i, row) in self.rows.iter().enumerate() {
            for &(j, w) in row {
                m[(i, j)] = w;
            }
        }
        m
    }

    /// Check the intended stochasticity, nonnegative entries and (for a single static matrix)
    /// strong connectivity of the support.
    pub fn validate(&self) -> Result<(), MixingError> {
        self.check(self.stochasticity, WEIGHT_TOLERANCE)?;
        let arcs = self
            .rows
            .iter()
            .enumerate()
            .flat_map(|(i, row)| row.iter().filter(|e| e.1 > 0.0).map(move |&(j, _)| (j, i)));
        let support = DiGraph::from_arcs(self.n(), arcs).expect("weights index valid nodes");
        if !support.is_strongly_connected() {
            return Err(MixingError::NotStronglyConnected);
        }
        Ok(())
    }

    /// Check the sums of one kind and nonnegativity, without the connectivity check (one round
    /// of a time-varying schedule need not be connected).
    pub fn check(&self, kind: Stochasticity, tolerance: f64) -> Result<(), MixingError> {
        let n = self.n();
        let mut column_sums = vec![0.0; n];
        for (i, row) in self.rows.iter().enumerate() {
            let mut sum = 0.0;
            for &(j, w) in row {
                if j >= n {
                    return Err(MixingError::Dimension { n, len: j + 1 });
                }
                if !(w.is_finite() && w >= 0.0) {
                    return Err(MixingError::BadEntry { i, j, w });
                }
                sum += w;
                column_sums[j] += w;
            }
            if matches!(kind, Stochasticity::Row | Stochasticity::Doubly)
                && (sum - 1.0).abs() > tolerance
            {
                return Err(MixingError::RowSum { row: i, sum });
            }
        }
        if matches!(kind, Stochasticity::Column | Stochasticity::Doubly) {
            for (column, &sum) in column_sums.iter().enumerate() {
                if (sum - 1.0).abs() > tolerance {
                    return Err(MixingError::ColumnSum { column, sum });
                }
            }
        }
        Ok(())
    }
}
