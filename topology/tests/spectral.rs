//! Spectral gaps against closed forms, and exact gossip contracting at the predicted rate.

use murmur_topology::closed_form;
use murmur_topology::spectral::{self, Method};
use murmur_topology::{Graph, MixingMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn ring_eigenvalues_match_closed_form() {
    for n in [3, 4, 7, 16, 33, 100] {
        let w = MixingMatrix::metropolis_hastings(&Graph::ring(n));
        let mut expected = closed_form::ring_eigenvalues(n);
        expected.sort_by(|a, b| b.total_cmp(a));
        let got = spectral::eigenvalues_dense(&w);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-12, "n={n}: {g} vs {e}");
        }
    }
}

#[test]
fn dense_gaps_match_closed_forms() {
    for n in [3, 8, 50, 200] {
        let s = spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::ring(n))).unwrap();
        assert!(rel(s.gap, closed_form::ring(n).gap()) < 1e-9, "ring {n}");
        let s =
            spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::complete(n))).unwrap();
        assert!(
            (s.gap - closed_form::complete_gap(n)).abs() < 1e-12,
            "complete {n}"
        );
        let s = spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::star(n))).unwrap();
        assert!(
            rel(s.gap, closed_form::star_gap(n)) < 1e-9,
            "star {n}: {}",
            s.gap
        );
    }
    for dim in 1..=7 {
        let s =
            spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::hypercube(dim))).unwrap();
        assert!(
            rel(s.gap, closed_form::hypercube_gap(dim)) < 1e-9,
            "hypercube {dim}"
        );
    }
    for (r, c) in [(3, 3), (4, 6), (8, 8), (5, 12)] {
        let s =
            spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::torus(r, c))).unwrap();
        assert!(
            rel(s.gap, closed_form::torus(r, c).gap()) < 1e-9,
            "torus {r}x{c}"
        );
    }
    for n in [4, 16, 37, 128] {
        let s =
            spectral::spectrum(&MixingMatrix::metropolis_hastings(&Graph::exponential(n))).unwrap();
        assert!(
            rel(s.gap, closed_form::exponential(n).gap()) < 1e-9,
            "exp {n}"
        );
    }
}

#[test]
fn lanczos_matches_closed_forms_at_scale() {
    let cases: Vec<(&str, Graph, f64)> = vec![
        ("ring", Graph::ring(4096), closed_form::ring(4096).gap()),
        ("ring-odd", Graph::ring(1001), closed_form::ring(1001).gap()),
        (
            "torus",
            Graph::torus(64, 64),
            closed_form::torus(64, 64).gap(),
        ),
        (
            "exponential",
            Graph::exponential(4096),
            closed_form::exponential(4096).gap(),
        ),
        (
            "hypercube",
            Graph::hypercube(11),
            closed_form::hypercube_gap(11),
        ),
        ("star", Graph::star(600), closed_form::star_gap(600)),
    ];
    for (name, graph, expected) in cases {
        let w = MixingMatrix::metropolis_hastings(&graph);
        let s = spectral::spectrum_lanczos(&w).unwrap();
        assert_eq!(s.method, Method::Lanczos);
        let err = rel(s.gap, expected);
        eprintln!(
            "{name}: gap {:.6e} expected {expected:.6e} rel {err:.2e} steps {} cg {}",
            s.gap, s.lanczos_steps, s.cg_iterations
        );
        assert!(err < 1e-7, "{name}: {} vs {expected} (rel {err:e})", s.gap);
    }
}

#[test]
fn lanczos_finds_the_negative_side_when_it_decides_the_gap() {
    // Complete bipartite K_{m,m} with weights 1/(m+1): eigenvalues 1, 1/(m+1) and
    // (1-m)/(m+1), so 1 + λn = 2/(m+1) decides the gap, not 1 - λ2 = m/(m+1).
    let m = 300;
    let edges = (0..m).flat_map(|a| (m..2 * m).map(move |b| (a, b)));
    let g = Graph::from_edges(2 * m, edges).unwrap();
    let s = spectral::spectrum_lanczos(&MixingMatrix::max_degree(&g)).unwrap();
    let expected = 2.0 / (m as f64 + 1.0);
    assert!(rel(s.gap, expected) < 1e-9, "{} vs {expected}", s.gap);
    assert!(rel(s.one_minus_lambda2, m as f64 / (m as f64 + 1.0)) < 1e-9);
}

#[test]
fn neighbour_rule_graphs_mix_far_faster_than_the_ring() {
    use murmur_topology::NeighbourRule;
    let view: std::collections::BTreeSet<u64> = (0..512u64).map(|i| i * 2654435761).collect();
    let ring_gap = closed_form::ring(512).gap();
    for rule in [
        NeighbourRule::Exponential,
        NeighbourRule::RandomK { k: 2 },
        NeighbourRule::RandomK { k: 4 },
    ] {
        let g = rule.graph(&view);
        let gap = MixingMatrix::metropolis_hastings(g.graph())
            .spectral_gap()
            .unwrap();
        // Long-range edges make these expander-like: Θ(1) or Θ(1/log n) against Θ(1/n²).
        assert!(gap > 0.05 && gap > 1000.0 * ring_gap, "{rule}: gap {gap}");
    }
}

#[test]
fn lanczos_agrees_with_dense_on_random_graphs() {
    for seed in 0..3 {
        let g = Graph::random_regular(240, 3, seed).unwrap();
        let w = MixingMatrix::metropolis_hastings(&g);
        let dense = spectral::spectrum_dense(&w).unwrap();
        let lanczos = spectral::spectrum_lanczos(&w).unwrap();
        assert!(
            rel(lanczos.gap, dense.gap) < 1e-8,
            "{} vs {}",
            lanczos.gap,
            dense.gap
        );
        let g = Graph::erdos_renyi_connected(200, 0.03, seed).unwrap();
        let w = MixingMatrix::max_degree(&g);
        let dense = spectral::spectrum_dense(&w).unwrap();
        let lanczos = spectral::spectrum_lanczos(&w).unwrap();
        assert!(
            rel(lanczos.gap, dense.gap) < 1e-8,
            "{} vs {}",
            lanczos.gap,
            dense.gap
        );
    }
}

/// Consensus error `‖x − mean(x)‖`.
fn consensus_error(x: &[f64]) -> f64 {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt()
}

/// Per-round contraction of exact gossip measured over `rounds` after a `burn_in` that lets
/// the faster-decaying modes die out. The disagreement `x − mean` is rescaled to unit norm
/// each round (gossip is linear), so long runs never hit the rounding floor.
fn measured_contraction(w: &MixingMatrix, seed: u64, burn_in: usize, rounds: usize) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..w.n()).map(|_| rng.random::<f64>()).collect();
    let sum_before = x.iter().sum::<f64>();
    let after_one = w.apply(&x);
    // Exact gossip with doubly stochastic W keeps the sum.
    assert!((after_one.iter().sum::<f64>() - sum_before).abs() < 1e-9);
    let mean = sum_before / x.len() as f64;
    let mut y: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let mut log_factor = 0.0;
    for round in 0..burn_in + rounds {
        let before = consensus_error(&y);
        y = w.apply(&y);
        // Rounding leaks into the all-ones direction, which W does not damp; drop it.
        let drift = y.iter().sum::<f64>() / y.len() as f64;
        y.iter_mut().for_each(|v| *v -= drift);
        let after = consensus_error(&y);
        if round >= burn_in {
            log_factor += (after / before).ln();
        }
        y.iter_mut().for_each(|v| *v /= after);
    }
    (log_factor / rounds as f64).exp()
}

#[test]
fn exact_gossip_contracts_at_one_minus_gap() {
    let cases = [
        ("ring", Graph::ring(64), 800, 400),
        ("torus", Graph::torus(8, 8), 150, 100),
        ("exponential", Graph::exponential(64), 200, 50),
        ("exponential-odd", Graph::exponential(100), 200, 50),
    ];
    for (name, graph, burn_in, rounds) in cases {
        let w = MixingMatrix::metropolis_hastings(&graph);
        let gap = spectral::spectrum(&w).unwrap().gap;
        for seed in 0..5 {
            let factor = measured_contraction(&w, seed, burn_in, rounds);
            // Compare rates, -ln(factor) against -ln(1 - gap): 5% of the rate, not of a factor
            // that is close to 1 anyway.
            let ratio = factor.ln() / (1.0 - gap).ln();
            eprintln!(
                "{name} seed {seed}: factor {factor:.6} vs 1-gap {:.6} (rate ratio {ratio:.4})",
                1.0 - gap
            );
            assert!(
                (ratio - 1.0).abs() < 0.05,
                "{name} seed {seed}: rate ratio {ratio}"
            );
        }
    }
}
