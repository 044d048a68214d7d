//! Spectral gap of ring, torus, exponential and random regular graphs (Metropolis–Hastings
//! weights) at n = 256, 1024, 4096: the gap computed, the closed form where one exists, the
//! relative error and the time taken.
//!
//! `cargo run --release -p murmur-topology --example gap_bench`
//!
//! n ≤ 256 uses the dense eigen-decomposition, larger n shift-invert Lanczos. Random regular
//! graphs have no closed form: at n ≤ 1024 the Lanczos value is checked against a dense
//! decomposition instead, and the Ramanujan value is shown for context. A second table shows
//! the degrees and gaps of the live neighbour rules on random peer ids.

use std::time::Instant;

use murmur_topology::NeighbourRule;
use murmur_topology::spec::near_square;
use murmur_topology::spectral::{self, Spectrum};
use murmur_topology::{Graph, MixingMatrix, closed_form};
use rand::{Rng, SeedableRng};

const SIZES: [usize; 3] = [256, 1024, 4096];
const RANDOM_REGULAR_K: usize = 4;

struct Row {
    name: String,
    n: usize,
    spectrum: Spectrum,
    millis: f64,
    closed: Option<f64>,
    dense_check: Option<(f64, f64)>,
}

fn timed_spectrum(w: &MixingMatrix) -> (Spectrum, f64) {
    let start = Instant::now();
    let s = spectral::spectrum(w).expect("generated weights are valid");
    (s, start.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let mut rows = Vec::new();
    for &n in &SIZES {
        let (r, c) = near_square(n);
        let cases: Vec<(String, Graph, Option<f64>)> = vec![
            (
                "ring".into(),
                Graph::ring(n),
                Some(closed_form::ring(n).gap()),
            ),
            (
                format!("torus {r}x{c}"),
                Graph::torus(r, c),
                Some(closed_form::torus(r, c).gap()),
            ),
            (
                "exponential".into(),
                Graph::exponential(n),
                Some(closed_form::exponential(n).gap()),
            ),
            (
                format!("random-regular:{RANDOM_REGULAR_K}"),
                Graph::random_regular(n, RANDOM_REGULAR_K, 1).expect("4-regular graphs exist"),
                None,
            ),
        ];
        for (name, graph, closed) in cases {
            let w = MixingMatrix::metropolis_hastings(&graph);
            let (spectrum, millis) = timed_spectrum(&w);
            let dense_check =
                (closed.is_none() && n > spectral::DENSE_LIMIT && n <= 1024).then(|| {
                    let start = Instant::now();
                    let dense = spectral::spectrum_dense(&w).expect("valid weights");
                    (dense.gap, start.elapsed().as_secs_f64() * 1e3)
                });
            rows.push(Row {
                name,
                n,
                spectrum,
                millis,
                closed,
                dense_check,
            });
        }
    }

    println!(
        "{:<20} {:>5} {:>8} {:>14} {:>21} {:>10} {:>10} {:>8} {:>7}",
        "graph", "n", "method", "gap", "reference", "rel.err", "time ms", "lanczos", "cg"
    );
    let mut max_rel_closed: f64 = 0.0;
    let mut max_rel_dense: f64 = 0.0;
    let mut slowest = (0.0, String::new());
    for row in &rows {
        let s = &row.spectrum;
        let (reference, kind) = match (row.closed, row.dense_check) {
            (Some(c), _) => (Some(c), "closed"),
            (None, Some((d, _))) => (Some(d), "dense"),
            (None, None) => (None, ""),
        };
        let rel = reference.map(|r| (s.gap - r).abs() / r);
        match (kind, rel) {
            ("closed", Some(e)) => max_rel_closed = max_rel_closed.max(e),
            ("dense", Some(e)) => max_rel_dense = max_rel_dense.max(e),
            _ => {}
        }
        if row.millis > slowest.0 {
            slowest = (
                row.millis,
                format!("{}-{}", row.name.replace(' ', "-"), row.n),
            );
        }
        let reference_text = match reference {
            Some(r) => format!("{r:.6e} {kind}"),
            None => format!(
                "~{:.4e} ramanujan",
                closed_form::random_regular_ramanujan(RANDOM_REGULAR_K)
            ),
        };
        println!(
            "{:<20} {:>5} {:>8} {:>14.6e} {:>21} {:>10} {:>10.2} {:>8} {:>7}",
            row.name,
            row.n,
            format!("{:?}", s.method),
            s.gap,
            reference_text,
            rel.map_or("-".to_string(), |e| format!("{e:.1e}")),
            row.millis,
            s.lanczos_steps,
            s.cg_iterations,
        );
        if let Some((_, dense_ms)) = row.dense_check {
            println!("{:<20} {:>5} dense check took {dense_ms:.1} ms", "", row.n);
        }
    }
    // Live neighbour rules on random peer ids: what gap the coordinator-free graphs get.
    println!();
    println!(
        "{:<16} {:>5} {:>8} {:>8} {:>8} {:>14} {:>10}",
        "neighbour rule", "n", "min deg", "max deg", "bound", "gap", "time ms"
    );
    let mut rule_min_gap = f64::INFINITY;
    for &n in &SIZES {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        let mut view = std::collections::BTreeSet::new();
        while view.len() < n {
            view.insert(rng.random::<u64>());
        }
        for rule in [
            NeighbourRule::Ring,
            NeighbourRule::Exponential,
            NeighbourRule::RandomK { k: 2 },
            NeighbourRule::RandomK { k: 4 },
        ] {
            let start = Instant::now();
            let g = rule.graph(&view);
            let w = MixingMatrix::metropolis_hastings(g.graph());
            let s = spectral::spectrum(&w).expect("rule graphs are connected");
            let millis = start.elapsed().as_secs_f64() * 1e3;
            if rule != NeighbourRule::Ring {
                rule_min_gap = rule_min_gap.min(s.gap);
            }
            println!(
                "{:<16} {:>5} {:>8} {:>8} {:>8} {:>14.6e} {:>10.2}",
                rule.to_string(),
                n,
                g.graph().min_degree(),
                g.graph().max_degree(),
                rule.max_degree(n),
                s.gap,
                millis
            );
        }
    }
    println!(
        "summary: cases={} max_rel_err_closed_form={:.2e} max_rel_err_vs_dense={:.2e} slowest_ms={:.1} slowest={} min_gap_nonring_rules={:.3e}",
        rows.len(),
        max_rel_closed,
        max_rel_dense,
        slowest.0,
        slowest.1,
        rule_min_gap
    );
}
