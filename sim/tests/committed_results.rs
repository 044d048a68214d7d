//! The figures in `docs/results/` cannot silently go stale: one committed experiment (the
//! hostile-peers sweep, eight variants of 16 peers, its attacks and defences) is re-run and
//! every variant's final metrics are compared with the committed summary table. A change of
//! the code that moves them fails here until the experiment is regenerated
//! (`scripts/adversary.sh`) and the quoted figures updated.
//!
//! Runs are bit-for-bit reproducible on one machine; across machines the codecs may take
//! another SIMD path, so accuracy may differ by one test sample (1/359) and bytes by 0.5%.

use std::collections::BTreeMap;

use murmur_sim::experiment::Experiment;

const EXPERIMENT: &str = "adversary";

fn committed_summary(root: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let path = format!("{root}/../docs/results/{EXPERIMENT}_summary.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let row: BTreeMap<String, String> = header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_string))
                .collect();
            (row["name"].clone(), row)
        })
        .collect()
}

fn stale(what: String) -> ! {
    panic!(
        "docs/results/{EXPERIMENT}_summary.csv is stale ({what}): regenerate it with scripts/{EXPERIMENT}.sh and update the figures quoted in docs/results/README.md"
    )
}

#[test]
fn the_committed_adversary_results_match_a_fresh_run() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/experiments/{EXPERIMENT}.toml");
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let experiment = Experiment::from_table(table, &toml::Table::new()).unwrap();
    let result = experiment.run(|_| {}).unwrap();
    let committed = committed_summary(root);
    assert_eq!(
        result.outcomes.len(),
        committed.len(),
        "variants run vs committed"
    );
    for outcome in &result.outcomes {
        let fresh = outcome.summary();
        let name = &fresh["name"];
        let Some(old) = committed.get(name) else {
            stale(format!("no committed row for {name:?}"))
        };
        let number = |m: &BTreeMap<String, String>, k: &str| -> f64 {
            m[k].parse()
                .unwrap_or_else(|_| panic!("{name}: {k} = {:?}", m[k]))
        };
        for key in ["accuracy_avg", "accuracy_mean", "accuracy_worst"] {
            let (a, b) = (number(&fresh, key), number(old, key));
            if (a - b).abs() > 1.0 / 359.0 + 1e-9 {
                stale(format!("{name}: {key} {a} now, {b} committed"));
            }
        }
        let (a, b) = (number(&fresh, "bytes"), number(old, "bytes"));
        if (a - b).abs() > 0.005 * b {
            stale(format!("{name}: bytes {a} now, {b} committed"));
        }
        if fresh["rejected"] != old["rejected"] {
            stale(format!(
                "{name}: rejected {} now, {} committed",
                fresh["rejected"], old["rejected"]
            ));
        }
    }
}
