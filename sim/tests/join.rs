//! A late joiner's download on bandwidth-limited simulated links (`sim/examples/join.toml`
//! at a smaller size): averaging its three neighbours' copies, pulled in chunks from all of
//! them at once, takes at most 0.6× the time of the single-donor download (where one uplink
//! carries the donor's copy and its model), and both follow from the bytes and the uplink
//! bandwidth: the simulator charges every chunk to its sender's uplink.

use murmur_sim::scenario::{self, Scenario, parse_assignment, set_dotted};

/// Uplink bandwidth of the test's links, Mbit/s.
const MBPS: f64 = 2.0;

fn join_scenario(join_model: &str) -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/join.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for s in [
        // 19,210 parameters in chunks of 4096 values: five chunks per copy.
        "task.model=\"mlp:256\"".to_string(),
        "peer.snapshot_chunk_values=4096".to_string(),
        format!("network.bandwidth_mbps={MBPS}"),
        "rounds=100".to_string(),
        format!("peer.join_model=\"{join_model}\""),
    ] {
        let (k, v) = parse_assignment(&s).unwrap();
        set_dotted(&mut t, &k, v);
    }
    Scenario::from_table(t).unwrap()
}

/// (seconds from the join to the adoption, donors) of the one joiner.
fn join(join_model: &str) -> (f64, u32, usize) {
    let outcome = scenario::run(&join_scenario(join_model), |_, _| {}).unwrap();
    let report = outcome.main().report.as_ref().unwrap();
    assert_eq!(report.joins.len(), 1, "{:?}", report.joins);
    let j = &report.joins[0];
    (j.join_s, j.donors, outcome.params)
}

#[test]
fn averaging_three_neighbours_copies_joins_in_at_most_six_tenths_of_the_donor_time() {
    let (average, donors, params) = join("average");
    let (donor, one, _) = join("donor");
    // One public copy on one uplink, in seconds: what each of the three donors sends.
    let copy_s = 4.0 * params as f64 * 8.0 / (MBPS * 1e6);
    println!(
        "params={params} copy_s={copy_s:.3} average_join_s={average:.3} (donors={donors}) \
         donor_join_s={donor:.3} ratio={:.3}",
        average / donor
    );
    assert_eq!(
        donors, 3,
        "the joiner has three neighbours on the 3-regular graph"
    );
    assert_eq!(one, 1);
    assert!(
        average <= 0.6 * donor,
        "average {average:.3} s against donor {donor:.3} s"
    );
    // Neither beats the physical limit of its busiest uplink, and neither is far above it
    // (latency, the donors' own updates and the request round trips are the difference).
    assert!(
        average >= copy_s && average <= 1.5 * copy_s,
        "average join {average:.3} s, one copy on the uplink {copy_s:.3} s"
    );
    assert!(
        donor >= 2.0 * copy_s && donor <= 1.5 * 2.0 * copy_s,
        "donor join {donor:.3} s, a copy and a model on one uplink {:.3} s",
        2.0 * copy_s
    );
}
