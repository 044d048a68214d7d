//! Weights are validated as intended, validators name what is wrong, time-varying schedules
//! behave as their papers say, and specs parse and build.

use murmur_topology::mixing::MixingError;
use murmur_topology::schedule::epidemic_targets;
use murmur_topology::{
    DiGraph, DirectedMixing, Graph, MixingMatrix, Schedule, SpecError, Stochasticity, TopologySpec,
};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn every_generated_w_is_validated() {
    for text in TopologySpec::EXAMPLES {
        let spec: TopologySpec = text.parse().unwrap();
        for n in [8, 16, 64, 100] {
            let schedule = match spec.build(n, 7) {
                Ok(s) => s,
                // Only the hypercube refuses sizes (100 is no power of two).
                Err(SpecError::BadSize { .. }) if spec == TopologySpec::Hypercube => continue,
                Err(e) => panic!("{spec} n={n}: {e}"),
            };
            if let Some(graph) = schedule.static_graph() {
                assert!(graph.is_connected(), "{spec} n={n}");
                for w in [
                    MixingMatrix::metropolis_hastings(graph),
                    MixingMatrix::max_degree(graph),
                    MixingMatrix::metropolis_hastings(graph).lazy(),
                ] {
                    w.validate().unwrap_or_else(|e| panic!("{spec} n={n}: {e}"));
                }
            }
            for t in 0..6 {
                let round = schedule.round(t);
                let intended = match &schedule {
                    Schedule::Static(_) | Schedule::OnePeerExponential { .. } => {
                        Stochasticity::Doubly
                    }
                    Schedule::Directed(_) => Stochasticity::Column,
                    Schedule::Epidemic { .. } => Stochasticity::Row,
                };
                round
                    .weights
                    .check(intended, 1e-12)
                    .unwrap_or_else(|e| panic!("{spec} n={n} t={t}: {e}"));
                if !schedule.is_time_varying() {
                    round.weights.validate().unwrap();
                }
            }
        }
    }
}

#[test]
fn validator_names_what_is_wrong() {
    let good = MixingMatrix::metropolis_hastings(&Graph::ring(5));
    assert!(good.validate().is_ok());

    let mut m = good.to_dense();
    m[(0, 1)] += 0.1;
    m[(0, 0)] -= 0.1;
    assert!(matches!(
        MixingMatrix::from_dense(&m).validate(),
        Err(MixingError::NotSymmetric { i: 0, j: 1, .. })
    ));

    let mut m = good.to_dense();
    m[(2, 2)] += 0.25;
    assert!(matches!(
        MixingMatrix::from_dense(&m).validate(),
        Err(MixingError::RowSum { row: 2, .. })
    ));

    let mut m = good.to_dense();
    m[(3, 3)] = -0.5;
    m[(3, 4)] = 1.0;
    m[(4, 3)] = 1.0;
    m[(4, 4)] -= 2.0 / 3.0;
    assert!(matches!(
        MixingMatrix::from_dense(&m).validate(),
        Err(MixingError::BadEntry { .. })
    ));

    let two_rings = Graph::from_edges(6, [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)]).unwrap();
    assert_eq!(
        MixingMatrix::metropolis_hastings(&two_rings).validate(),
        Err(MixingError::Disconnected { components: 2 })
    );
    assert!(
        MixingMatrix::metropolis_hastings(&two_rings)
            .spectral_gap()
            .is_err()
    );

    let chain = DiGraph::from_arcs(3, [(0, 1), (1, 2)]).unwrap();
    assert_eq!(
        DirectedMixing::column_stochastic(&chain).validate(),
        Err(MixingError::NotStronglyConnected)
    );
    // A column-stochastic matrix is not row stochastic: the check says which sum is off.
    let exp = DiGraph::from_arcs(3, [(0, 1), (0, 2), (1, 0), (2, 0)]).unwrap();
    let p = DirectedMixing::column_stochastic(&exp);
    assert_eq!(p.stochasticity(), Stochasticity::Column);
    assert!(p.validate().is_ok());
    assert!(matches!(
        p.check(Stochasticity::Row, 1e-12),
        Err(MixingError::RowSum { .. })
    ));
}

#[test]
fn lazy_weights_have_no_negative_eigenvalue() {
    let w = MixingMatrix::metropolis_hastings(&Graph::hypercube(4)).lazy();
    let spectrum = murmur_topology::spectral::spectrum(&w).unwrap();
    assert!(spectrum.lambda_min >= -1e-12);
    // (I + W)/2 halves the distance of every eigenvalue to 1.
    let plain = murmur_topology::spectral::spectrum(&MixingMatrix::metropolis_hastings(
        &Graph::hypercube(4),
    ))
    .unwrap();
    assert!((spectrum.one_minus_lambda2 - plain.one_minus_lambda2 / 2.0).abs() < 1e-12);
}

fn random_vector(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f64>() * 10.0 - 5.0).collect()
}

#[test]
fn one_peer_exponential_averages_exactly_in_log2_n_rounds() {
    for log in 1..=10u32 {
        let n = 1usize << log;
        let schedule = TopologySpec::OnePeerExponential.build(n, 0).unwrap();
        assert_eq!(schedule.period(), Some(u64::from(log)));
        // The product of the log2 n round matrices is exactly J / n.
        if n <= 64 {
            let mut product = DMatrix::<f64>::identity(n, n);
            for t in 0..u64::from(log) {
                product = schedule.round(t).weights.to_dense() * product;
            }
            for v in product.iter() {
                assert!((v - 1.0 / n as f64).abs() < 1e-15);
            }
        }
        // And from any start vector, starting at any round.
        for start in [0u64, 3] {
            let mut x = random_vector(n, u64::from(log) + start);
            let mean = x.iter().sum::<f64>() / n as f64;
            for t in start..start + u64::from(log) {
                let round = schedule.round(t);
                assert_eq!(round.targets.arc_count(), n);
                x = round.weights.apply(&x);
            }
            let worst = x.iter().map(|v| (v - mean).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-12, "n={n}: off by {worst}");
        }
        // One round fewer is not enough (for n >= 4, a random start keeps some spread).
        if n >= 4 {
            let mut x = random_vector(n, 99);
            let mean = x.iter().sum::<f64>() / n as f64;
            for t in 0..u64::from(log) - 1 {
                x = schedule.round(t).weights.apply(&x);
            }
            assert!(x.iter().any(|v| (v - mean).abs() > 1e-6));
        }
    }
}

#[test]
fn epidemic_rounds_are_fresh_seeded_and_row_stochastic() {
    let (n, s) = (50, 3);
    let schedule = TopologySpec::Epidemic { s }.build(n, 11).unwrap();
    let r0 = schedule.round(0);
    let r1 = schedule.round(1);
    for i in 0..n {
        assert_eq!(r0.targets.out_neighbours(i).len(), s);
        assert!(!r0.targets.out_neighbours(i).contains(&i));
    }
    assert_ne!(r0.targets, r1.targets, "each round draws afresh");
    assert_eq!(
        r0.targets,
        epidemic_targets(n, s, 11, 0),
        "round t needs only (seed, t)"
    );
    assert_ne!(r0.targets, epidemic_targets(n, s, 12, 0));
    assert_eq!(r0.weights.stochasticity(), Stochasticity::Row);
    // Row-stochastic averaging reaches consensus (not necessarily on the exact mean).
    let mut x = random_vector(n, 5);
    for t in 0..60 {
        x = schedule.round(t).weights.apply(&x);
    }
    let spread =
        x.iter().cloned().fold(f64::MIN, f64::max) - x.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 1e-6, "spread {spread}");
}

#[test]
fn push_sum_on_directed_graphs_finds_the_average() {
    let n = 24;
    // The directed exponential graph is regular, so its push-sum weights are doubly stochastic.
    let schedule = TopologySpec::DirectedExponential.build(n, 0).unwrap();
    assert_eq!(
        schedule.round(0).weights.stochasticity(),
        Stochasticity::Doubly
    );
    // Extra arcs make out-degrees unequal: column stochastic only, and plain averaging would be
    // biased; the push-sum ratio x / w still finds the average.
    let exponential = DiGraph::exponential(n);
    let arcs = exponential.arcs().chain([(0, 5), (0, 7), (0, 9), (3, 11)]);
    let irregular = DiGraph::from_arcs(n, arcs).unwrap();
    for graph in [exponential, irregular] {
        let p = DirectedMixing::column_stochastic(&graph);
        p.validate().unwrap();
        let mut x = random_vector(n, 8);
        let mean = x.iter().sum::<f64>() / n as f64;
        let mut w = vec![1.0; n];
        for _ in 0..200 {
            x = p.apply(&x);
            w = p.apply(&w);
        }
        for (xi, wi) in x.iter().zip(&w) {
            assert!((xi / wi - mean).abs() < 1e-9);
        }
    }
    let p = DirectedMixing::column_stochastic(
        &DiGraph::from_arcs(
            n,
            [(0, 5)].into_iter().chain(DiGraph::exponential(n).arcs()),
        )
        .unwrap(),
    );
    assert_eq!(p.stochasticity(), Stochasticity::Column);
}

#[test]
fn specs_round_trip_and_reject_nonsense() {
    for text in TopologySpec::EXAMPLES {
        let spec: TopologySpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), *text);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<TopologySpec>(&json).unwrap(), spec);
    }
    assert!(matches!(
        "mesh".parse::<TopologySpec>(),
        Err(SpecError::Unknown(_))
    ));
    assert!(matches!(
        "random-regular".parse::<TopologySpec>(),
        Err(SpecError::BadParameter { .. })
    ));
    assert!(matches!(
        "erdos-renyi:1.5".parse::<TopologySpec>(),
        Err(SpecError::BadParameter { .. })
    ));
    assert!(matches!(
        TopologySpec::Hypercube.build(12, 0),
        Err(SpecError::BadSize { .. })
    ));
    assert!(matches!(
        TopologySpec::RandomRegular { k: 3 }.build(7, 0),
        Err(SpecError::Graph(_))
    ));
    // Same seed, same graph; another seed, another graph.
    let a = TopologySpec::RandomRegular { k: 4 }
        .build_graph(64, 1)
        .unwrap();
    let b = TopologySpec::RandomRegular { k: 4 }
        .build_graph(64, 1)
        .unwrap();
    let c = TopologySpec::RandomRegular { k: 4 }
        .build_graph(64, 2)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}
