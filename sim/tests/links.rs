//! The edge agreement under the simulated connection layer: dial races, duplicate connections
//! closed with frames on them, lost frames and resets. After the network is quiet, every edge
//! is up at both ends or at neither, and the swarm has settled on the rule's graph.

use std::time::Duration;

use murmur_sim::links::{LinksConfig, run_links};
use murmur_topology::NeighbourRule;
use proptest::prelude::*;

/// The reported daemon race: three nodes, two of which bootstrap from the first at the same
/// instant (and so dial each other at the same instant once they learn of each other).
#[test]
fn three_nodes_bootstrapping_at_once_agree_on_every_edge() {
    let mut duplicates = 0;
    for seed in 0..200 {
        let config = LinksConfig {
            peers: 3,
            rule: NeighbourRule::Exponential,
            seed,
            start_spread: Duration::ZERO,
            turbulent_for: Duration::ZERO,
            drop: 0.0,
            resets_per_sec: 0.0,
            end: Duration::from_secs(5),
            ..LinksConfig::default()
        };
        let r = run_links(&config);
        assert_eq!(r.asymmetric, 0, "seed {seed}: {r:?}");
        assert_eq!(r.agreed, 3, "seed {seed}: a triangle: {r:?}");
        assert_eq!(r.rejected, 0, "seed {seed}: {r:?}");
        duplicates += r.duplicate_connections;
    }
    assert!(duplicates > 0, "the scenario must produce the dial race");
}

#[test]
fn a_turbulent_start_of_64_nodes_settles_on_the_rule_graph() {
    for seed in 0..4 {
        let r = run_links(&LinksConfig {
            seed,
            ..LinksConfig::default()
        });
        assert_eq!(r.asymmetric, 0, "seed {seed}: {r:?}");
        assert_eq!(r.missing, 0, "seed {seed}: {r:?}");
        assert!(r.frames_lost > 0, "the run must lose frames: {r:?}");
        assert!(r.max_degree <= r.degree_bound, "{r:?}");
        assert!(r.settle_secs < 10.0, "{r:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn after_the_network_is_quiet_every_edge_is_agreed_by_both_ends_or_neither(
        peers in 2usize..24,
        seed in any::<u64>(),
        drop in 0.0f64..0.4,
        resets in 0.0f64..3.0,
        rule in prop_oneof![
            Just(NeighbourRule::Ring),
            Just(NeighbourRule::Exponential),
            Just(NeighbourRule::RandomK { k: 2 }),
        ],
        spread_ms in 0u64..200,
    ) {
        let r = run_links(&LinksConfig {
            peers,
            rule,
            seed,
            drop,
            resets_per_sec: resets,
            start_spread: Duration::from_millis(spread_ms),
            end: Duration::from_secs(15),
            ..LinksConfig::default()
        });
        prop_assert_eq!(r.asymmetric, 0, "{:?}", r);
        prop_assert_eq!(r.missing, 0, "{:?}", r);
    }
}
