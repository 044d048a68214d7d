//! The `[headline]` comparison of an experiment: names it cannot resolve are refused when the
//! file is read, and the factor it reports is the dense D-PSGD run's bytes over the chosen
//! recipe's, for the recipe that ends within tolerance of all-reduce.

use murmur_sim::experiment::Experiment;

fn experiment(headline: &str) -> anyhow::Result<Experiment> {
    let text = format!(
        r#"
name = "headline-test"
[base]
seed = 1
peers = 8
rounds = 40
eval_every = 10
topology = "exponential"
[base.task]
model = "softmax"
batch_size = 16
[base.peer]
local_steps = 1
[[variant]]
name = "dpsgd"
set = {{ "gossip.algorithm" = "dpsgd", baselines = ["allreduce"] }}
[[variant]]
name = "choco"
set = {{ "gossip.codec" = "threshold:0.05", "gossip.gamma" = 0.2 }}
{headline}
"#
    );
    Experiment::from_table(toml::from_str(&text)?, &toml::Table::new())
}

const HEADLINE: &str = r#"
[headline]
metric = "accuracy_avg"
tolerance = 0.5
allreduce = "dpsgd [allreduce]"
dpsgd = "dpsgd"
candidates = ["choco"]
saved_key = "bytes_saved_within_1pt"
"#;

#[test]
fn a_headline_naming_a_run_the_sweep_does_not_make_is_refused() {
    let bad = HEADLINE.replace("dpsgd [allreduce]", "dense [allreduce]");
    let err = format!("{:#}", experiment(&bad).unwrap_err());
    assert!(err.contains("dense [allreduce]"), "{err}");
    let bad = HEADLINE.replace("accuracy_avg", "accuracy_best");
    let err = format!("{:#}", experiment(&bad).unwrap_err());
    assert!(err.contains("headline.metric"), "{err}");
}

#[test]
fn the_headline_factor_is_dense_dpsgd_bytes_over_the_recipes() {
    let result = experiment(HEADLINE).unwrap().run(|_| {}).unwrap();
    let (table, kv) = result.headline().unwrap().unwrap();
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {kv:?}"))
    };
    let bytes = |name: &str| {
        result
            .outcomes
            .iter()
            .find(|o| o.name == name)
            .unwrap()
            .rows
            .last()
            .unwrap()
            .bytes as f64
    };
    let expected = bytes("dpsgd") / bytes("choco");
    assert!(expected > 1.0, "compression saved nothing: {expected}");
    let saved: f64 = get("bytes_saved_within_1pt").parse().unwrap();
    assert!((saved - expected).abs() < 0.06, "{saved} vs {expected}");
    // With a tolerance of 50 points the recipe is within it; with none it cannot be
    // (all-reduce's batch is 8 times larger), and the key says so.
    assert_eq!(get("within"), "1", "{table}");
    assert!(table.contains("choco"), "{table}");
    let strict = HEADLINE.replace("tolerance = 0.5", "tolerance = -0.5");
    let result = experiment(&strict).unwrap().run(|_| {}).unwrap();
    let (_, kv) = result.headline().unwrap().unwrap();
    assert!(kv.contains(&("within".into(), "0".into())), "{kv:?}");
    assert!(result.summary_line().contains("bytes_saved_within_1pt="));
}
