//! End-to-end properties of the simulator on the bundled digits task: reproducibility (also
//! across thread counts), compressed gossip against all-reduce and D-PSGD, faults, hostile
//! peers, and measured consensus rates against the spectral gap.

use murmur_sim::experiment::consensus_rate;
use murmur_sim::metrics::{MetricsFormat, MetricsWriter};
use murmur_sim::scenario::{self, Outcome, Scenario, parse_assignment, set_dotted};
use murmur_sim::topo;

fn quick_table() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quick.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn scenario_with(sets: &[&str]) -> Scenario {
    let mut t = quick_table();
    for s in sets {
        let (k, v) = parse_assignment(s).unwrap();
        set_dotted(&mut t, &k, v);
    }
    Scenario::from_table(t).unwrap()
}

fn run(s: &Scenario) -> Outcome {
    scenario::run(s, |_, _| {}).unwrap()
}

/// Runs the quick scenario with `base` and, unless empty, `extra` set.
fn run_with(base: &[&str], extra: &str) -> Outcome {
    let mut sets = base.to_vec();
    if !extra.is_empty() {
        sets.push(extra);
    }
    run(&scenario_with(&sets))
}

fn metrics_file(outcome: &Outcome) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.csv");
    let mut w = MetricsWriter::create(&path, MetricsFormat::Csv).unwrap();
    for v in &outcome.variants {
        for r in &v.rows {
            w.write(&v.name, r).unwrap();
        }
    }
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn last_acc(o: &Outcome) -> (f64, f64) {
    let l = o.main().rows.last().unwrap();
    (l.accuracy_avg, l.accuracy_mean)
}

/// A scenario exercising every source of randomness and every fault.
fn faulty() -> Scenario {
    scenario_with(&[
        "rounds=120",
        "baselines=[]",
        "peer.checkpoint_every=10",
        "network.loss=0.02",
        "network.reorder=0.1",
        "network.latency={kind=\"normal\", mean_ms=3.0, std_ms=2.0, min_ms=0.5}",
        "compute.stragglers={fraction=0.15, slowdown=4.0}",
        "faults.churn=[{at_s=0.3, kind=\"crash\", fraction=0.25, restart_after_s=0.3}, {at_s=0.5, kind=\"join\", peers=[15]}, {at_s=0.9, kind=\"leave\", peers=[3]}]",
        "faults.partitions=[{at_s=0.6, heal_s=0.8}]",
    ])
}

#[test]
fn same_seed_gives_identical_metric_files_on_one_and_two_threads() {
    let s = faulty();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let a = one.install(|| run(&s));
    let b = two.install(|| run(&s));
    let c = two.install(|| run(&s));
    let (fa, fb, fc) = (metrics_file(&a), metrics_file(&b), metrics_file(&c));
    assert!(fa.len() > 500, "metric file too short: {}", fa.len());
    assert_eq!(fa, fb, "1 thread and 2 threads differ");
    assert_eq!(fb, fc, "two runs on 2 threads differ");
    // The parallel path was exercised and the faults happened.
    let report = b.main().report.as_ref().unwrap();
    assert!(report.parallel_computes > 0, "no parallel compute batch");
    assert!(report.network.lost > 0 && report.network.reordered > 0);
    assert!(report.network.cut + report.network.undeliverable > 0);
    // Another seed gives another run (the comparison above can fail).
    let mut other = s.clone();
    other.seed = 2;
    assert_ne!(metrics_file(&two.install(|| run(&other))), fb);
}

#[test]
fn faults_cost_little_accuracy() {
    let clean = run(&scenario_with(&["rounds=120", "baselines=[]"]));
    let faulty = run(&faulty());
    let (clean_acc, _) = last_acc(&clean);
    let (faulty_acc, _) = last_acc(&faulty);
    let last = faulty.main().rows.last().unwrap();
    // Peer 3 left; the crashed quarter restarted and the joiner started.
    assert_eq!(last.live_peers, 15, "{last:?}");
    assert!(
        faulty_acc > clean_acc - 0.03,
        "faulty {faulty_acc} vs clean {clean_acc}"
    );
}

#[test]
fn compressed_gossip_matches_allreduce_with_100x_fewer_bytes_than_dpsgd() {
    let s = Scenario::from_table(quick_table()).unwrap();
    assert_eq!(s.peers, 16);
    assert_eq!(s.topology, "exponential");
    let o = run(&s);
    let choco = o.main().rows.last().unwrap();
    let allreduce = o.find("allreduce").unwrap().rows.last().unwrap();
    let dpsgd = o.find("dpsgd").unwrap().rows.last().unwrap();
    assert!(
        choco.accuracy_avg >= allreduce.accuracy_avg - 0.01,
        "CHOCO {} vs all-reduce {}",
        choco.accuracy_avg,
        allreduce.accuracy_avg
    );
    let saving = dpsgd.bytes as f64 / choco.bytes as f64;
    assert!(saving >= 100.0, "only {saving:.1}x fewer bytes than D-PSGD");
    // Same step budget: every peer ran every round.
    assert_eq!(choco.round, s.rounds);
    assert_eq!(dpsgd.round, s.rounds);
}

#[test]
fn clipping_contains_hostile_peers() {
    let base = run(&scenario_with(&["baselines=[]"]));
    let (base_avg, base_mean) = last_acc(&base);
    // Without clipping one peer sending huge values ruins everyone.
    let open = run(&scenario_with(&["baselines=[]", "adversary.kind=\"huge\""]));
    let (open_avg, _) = last_acc(&open);
    assert!(
        open_avg < base_avg - 0.2,
        "huge values without clipping: {open_avg} vs {base_avg}"
    );
    for kind in ["huge", "non-finite", "wrong-dim", "replay", "flood"] {
        let s = scenario_with(&[
            "baselines=[]",
            &format!("adversary.kind=\"{kind}\""),
            "peer.clip_radius=10.0",
            "peer.mode={round-tagged={timeout=20000}}",
        ]);
        let o = run(&s);
        let (avg, mean) = last_acc(&o);
        let last = o.main().rows.last().unwrap();
        assert_eq!(last.live_peers, 15, "{kind}: the attacker is not counted");
        assert!(
            avg >= base_avg - 0.02 && mean >= base_mean - 0.02,
            "{kind}: honest accuracy {avg}/{mean} vs {base_avg}/{base_mean} without attacker"
        );
        if matches!(kind, "non-finite" | "wrong-dim" | "flood") {
            assert!(last.rejected > 0, "{kind}: nothing rejected");
        }
    }
}

#[test]
fn measured_consensus_rate_matches_one_minus_spectral_gap() {
    for topology in ["ring", "exponential", "torus"] {
        let s = scenario_with(&[
            "baselines=[]",
            "rounds=60",
            "eval_every=2",
            &format!("topology=\"{topology}\""),
            "gossip.algorithm=\"dpsgd\"",
            "peer.local_steps=0",
            "init_noise=1.0",
        ]);
        let o = run(&s);
        let rate = consensus_rate(&o.main().rows).unwrap();
        let comm = topo::build(topology, s.peers, s.seed).unwrap();
        let gap = topo::spectral_gap(&comm.schedule).unwrap();
        assert!(
            (rate - (1.0 - gap)).abs() < 0.03,
            "{topology}: measured {rate:.4}, 1 - gap = {:.4}",
            1.0 - gap
        );
    }
}

#[test]
fn committed_scenarios_and_experiments_parse() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut scenarios = 0;
    for entry in std::fs::read_dir(format!("{root}/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            Scenario::from_table(t).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            scenarios += 1;
        }
    }
    let mut experiments = 0;
    for entry in std::fs::read_dir(format!("{root}/experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let e = murmur_sim::experiment::Experiment::from_table(t, &toml::Table::new())
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(!e.variants.is_empty());
            experiments += 1;
        }
    }
    assert!(
        scenarios >= 2 && experiments >= 6,
        "{scenarios} scenarios, {experiments} experiments"
    );
}

#[test]
fn a_thousand_peers_on_synthetic_softmax_complete_a_run() {
    let args = murmur_sim::bench::BenchArgs {
        peers: 1024,
        rounds: 5,
        samples_per_peer: 100,
        features: 32,
        classes: 10,
        topology: "exponential".into(),
        codec: "threshold:0.05".into(),
    };
    let s = murmur_sim::bench::scenario(&args).unwrap();
    let task = s.prepare().unwrap();
    assert!(task.train().len() >= 1024 * 100);
    let report = s.engine(&task).unwrap().run();
    assert_eq!(report.last.live_peers, 1024);
    assert_eq!(report.last.round, 5);
    assert_eq!(report.dim, 32 * 10 + 10);
    assert_eq!(report.computes, 1024 * 5);
    assert!(report.parallel_computes > report.computes / 2);
    // Learning happened: better than the 10% of chance.
    assert!(report.last.accuracy_avg > 0.2, "{:?}", report.last);
}

#[test]
fn privacy_reports_the_accountants_epsilon_and_stays_reproducible_through_restarts() {
    use murmur_gossip::privacy;
    let dp = "peer.privacy={clip=0.5, noise_multiplier=8.0, delta=1e-5}";
    let s = scenario_with(&["rounds=60", "baselines=[]", dp]);
    let o = run(&s);
    let summary: std::collections::BTreeMap<String, String> = o.summary().into_iter().collect();
    let expected = privacy::epsilon(8.0, 60, 1e-5).epsilon;
    assert_eq!(summary["epsilon"], format!("{expected:.4}"));
    assert_eq!(summary["delta"], "1e-5");
    let rows = &o.main().rows;
    assert_eq!(
        rows[0].epsilon, 0.0,
        "nothing released before the first round"
    );
    assert!(rows.windows(2).all(|w| w[0].epsilon <= w[1].epsilon));
    // Off: no epsilon in the summary, NaN in the rows.
    let off = run(&scenario_with(&["rounds=20", "baselines=[]"]));
    assert!(
        off.summary()
            .iter()
            .all(|(k, _)| k != "epsilon" && k != "delta")
    );
    assert!(off.main().rows.iter().all(|r| r.epsilon.is_nan()));

    // Crashes restarted from older checkpoints re-run rounds: those releases count again,
    // with fresh noise (a new key per incarnation), and the run stays bit-reproducible.
    let crashes = scenario_with(&[
        "rounds=60",
        "baselines=[]",
        dp,
        "peer.checkpoint_every=7",
        "faults.churn=[{at_s=0.2, kind=\"crash\", peers=[2, 5, 9], restart_after_s=0.1}]",
    ]);
    let a = run(&crashes);
    let b = run(&crashes);
    assert_eq!(metrics_file(&a), metrics_file(&b));
    let last = a.main().rows.last().unwrap();
    assert_eq!(last.round, 60);
    assert!(
        last.epsilon > expected,
        "a restored peer re-ran rounds, so its data was released more than 60 times: \
         {} vs {expected}",
        last.epsilon
    );
}

/// Asynchronous CHOCO on a network slower than the compute (1 ms latency, 50 µs steps: about
/// 20 rounds of local steps per message in flight) must still average: a peer may run ahead of
/// half its neighbours by at most `max_staleness` rounds (stale synchronous parallel), so it
/// ends within 2 points of round-tagged CHOCO, its models as close. Without the bound every
/// copy it mixes is ~20 rounds stale, past `max_staleness`, and is dropped: the peers train
/// alone (measured: worst accuracy 0.71 against 0.93).
#[test]
fn async_gossip_on_a_network_slower_than_compute_stays_within_two_points_of_round_tagged() {
    let base = [
        "peers=8",
        "rounds=300",
        "baselines=[]",
        "network.latency={kind=\"normal\", mean_ms=1.0, std_ms=0.2, min_ms=0.5}",
        "compute.step_ms=0.05",
        "peer.local_steps=1",
    ];
    let tagged = run(&scenario_with(&base));
    let mut sets = base.to_vec();
    sets.push("peer.mode={async={max_staleness=4, damping=1.0}}");
    let asynchronous = run(&scenario_with(&sets));
    let t = tagged.main().rows.last().unwrap();
    let a = asynchronous.main().rows.last().unwrap();
    assert_eq!(a.round, 300, "{a:?}");
    assert!(
        a.accuracy_worst >= t.accuracy_worst - 0.02,
        "async worst {} vs round-tagged {}",
        a.accuracy_worst,
        t.accuracy_worst
    );
    assert!(
        a.consensus_relative <= 2.0 * t.consensus_relative,
        "async consensus {} (round-tagged {})",
        a.consensus_relative,
        t.consensus_relative
    );
}

/// The staleness bound must not turn a straggler into everyone's pace: an asynchronous peer
/// waits for half its neighbours, never for the slowest. With one peer in eight ten times
/// slower, the others complete at least twice the rounds that round-tagged peers (which wait
/// for it, up to the timeout, every round) complete in the same simulated time.
#[test]
fn async_gossip_leaves_a_straggler_behind_instead_of_waiting_for_it() {
    let base = [
        "peers=8",
        "rounds=0",
        "duration_s=2.0",
        "eval_every=0",
        "eval_every_s=0.5",
        "baselines=[]",
        "compute.step_ms=2.0",
        "compute.spread=0.0",
        "compute.stragglers={fraction=0.125, slowdown=10.0}",
        "peer.mode={round-tagged={timeout=100000}}",
    ];
    let tagged = run(&scenario_with(&base));
    let mut sets = base.to_vec();
    sets.push("peer.mode={async={max_staleness=4, damping=1.0, timeout=100000}}");
    let asynchronous = run(&scenario_with(&sets));
    let t = tagged.main().rows.last().unwrap();
    let a = asynchronous.main().rows.last().unwrap();
    assert!(
        a.round_mean >= 2.0 * t.round_mean,
        "async {} rounds on average vs round-tagged {}",
        a.round_mean,
        t.round_mean
    );
}

/// `[peer.outer]` reaches the simulated peers: η = 1, μ = 0 is the plain local-SGD round (the
/// same run up to float rounding), a real outer step changes the run and still trains, and
/// every peer takes one outer step per round.
#[test]
fn the_diloco_outer_step_runs_in_the_simulator() {
    let base = ["rounds=60", "baselines=[]", "peer.local_steps=4"];
    let with = |extra: &str| run_with(&base, extra);
    let plain = with("");
    let unit = with("peer.outer={lr=1.0, momentum=0.0}");
    let nesterov = with("peer.outer={lr=0.5, momentum=0.5}");
    let acc = |o: &Outcome| o.main().rows.last().unwrap().accuracy_avg;
    println!(
        "plain {:.4}, outer(1, 0) {:.4}, outer(0.5, 0.5) {:.4}",
        acc(&plain),
        acc(&unit),
        acc(&nesterov)
    );
    assert!((acc(&plain) - acc(&unit)).abs() <= 0.005);
    assert_ne!(metrics_file(&plain), metrics_file(&nesterov));
    assert!(
        acc(&nesterov) >= acc(&plain) - 0.03,
        "outer step lost accuracy"
    );
    let report = nesterov.main().report.as_ref().unwrap();
    assert!(report.outer_steps >= 16 * 60, "{}", report.outer_steps);
}

#[test]
fn the_noise_corrected_adamw_runs_in_the_simulator_and_all_reduce_ignores_it() {
    let base = [
        "peers=4",
        "rounds=6",
        "eval_every=3",
        "baselines=[\"allreduce\"]",
        "task.model=\"transformer:layers=1,width=16,heads=2,context=16\"",
        "task.data={kind=\"shakespeare\"}",
        "task.batch_size=4",
        "task.eval_limit=8",
        "task.partition=\"iid\"",
        "task.optimizer={kind=\"adamw\", lr=0.001}",
    ];
    let with = |extra: &str| run_with(&base, extra);
    let plain = with("");
    let corrected = with("task.optimizer.second_moment_peers=4");
    let last = |o: &Outcome| o.main().rows.last().unwrap().test_loss_avg;
    assert!(last(&corrected).is_finite());
    assert_ne!(
        last(&plain),
        last(&corrected),
        "the option reaches the peers"
    );
    // All-reduce steps on the mean gradient already: its run is the same either way.
    let allreduce = |o: &Outcome| {
        let rows = &o.find("allreduce").unwrap().rows;
        rows.iter()
            .map(|r| r.test_loss_avg.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(allreduce(&plain), allreduce(&corrected));
}
