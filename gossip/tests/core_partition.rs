//! Partitioners: every sample dealt once, IID balance, Dirichlet skew growing as alpha
//! shrinks, label-sorted shards, contiguous blocks; synthetic heterogeneity.

use murmur_gossip::data::{
    self, Dataset, Partition, Synthetic, SyntheticKind, label_histograms, partition,
};
use murmur_gossip::model::ModelSpec;
use murmur_gossip::train::{CentralizedTrainer, TrainConfig};

fn assert_is_partition(shards: &[Vec<usize>], n: usize) {
    let mut seen = vec![false; n];
    for s in shards {
        assert!(!s.is_empty(), "empty shard");
        for &i in s {
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "sample {i} dealt twice"
            );
        }
    }
    assert!(seen.iter().all(|&s| s), "a sample was not dealt");
}

/// Share of each peer's shard taken by its most frequent class.
fn dominant_shares(hist: &[Vec<usize>]) -> Vec<f64> {
    hist.iter()
        .map(|h| *h.iter().max().unwrap() as f64 / h.iter().sum::<usize>() as f64)
        .collect()
}

#[test]
fn iid_is_balanced_and_seeded() {
    let d = data::digits();
    let shards = partition(&d, 7, &Partition::Iid, 1);
    assert_is_partition(&shards, d.len());
    let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    for share in dominant_shares(&label_histograms(&d, &shards)) {
        assert!(share < 0.2, "IID peer dominated by one class: {share}");
    }
    assert_eq!(partition(&d, 7, &Partition::Iid, 1), shards);
    assert_ne!(partition(&d, 7, &Partition::Iid, 2), shards);
}

#[test]
fn dirichlet_small_alpha_skews_labels_large_alpha_does_not() {
    let d = data::digits();
    let peers = 20;
    let skewed = partition(&d, peers, &"dirichlet:0.1".parse().unwrap(), 3);
    assert_is_partition(&skewed, d.len());
    let shares = dominant_shares(&label_histograms(&d, &skewed));
    let dominated = shares.iter().filter(|&&s| s > 0.5).count();
    assert!(
        dominated >= peers * 3 / 4,
        "alpha=0.1: only {dominated}/{peers} peers have a class > 50%: {shares:?}"
    );
    let flat = partition(&d, peers, &Partition::Dirichlet { alpha: 1000.0 }, 3);
    assert_is_partition(&flat, d.len());
    let flat_shares = dominant_shares(&label_histograms(&d, &flat));
    assert!(
        flat_shares.iter().all(|&s| s < 0.3),
        "alpha=1000 should be near IID: {flat_shares:?}"
    );
    // Mean number of classes holding >= 5% of a peer's data: few for 0.1, all ten for 1000.
    let classes_present = |shards: &[Vec<usize>]| {
        let h = label_histograms(&d, shards);
        h.iter()
            .map(|h| {
                let total: usize = h.iter().sum();
                h.iter().filter(|&&c| c * 20 >= total).count()
            })
            .sum::<usize>() as f64
            / h.len() as f64
    };
    assert!(
        classes_present(&skewed) < 3.5,
        "{}",
        classes_present(&skewed)
    );
    assert!(classes_present(&flat) > 9.5);
}

#[test]
fn shards_limit_classes_per_peer() {
    let d = data::digits();
    let shards = partition(&d, 10, &Partition::Shards { per_peer: 2 }, 4);
    assert_is_partition(&shards, d.len());
    for h in label_histograms(&d, &shards) {
        let present = h.iter().filter(|&&c| c > 0).count();
        assert!(
            present <= 4,
            "peer sees {present} classes with 2 label-sorted shards"
        );
    }
}

#[test]
fn contiguous_blocks_follow_dataset_order() {
    let d = data::digits();
    let shards = partition(&d, 4, &Partition::Contiguous, 0);
    assert_is_partition(&shards, d.len());
    assert_eq!(shards[0], (0..449).collect::<Vec<_>>());
    assert_eq!(*shards[3].last().unwrap(), d.len() - 1);
    for text in ["iid", "dirichlet:0.5", "shards:3", "contiguous"] {
        assert_eq!(text.parse::<Partition>().unwrap().to_string(), text);
    }
    for bad in ["dirichlet:0", "dirichlet", "shards:0", "random"] {
        assert!(bad.parse::<Partition>().is_err(), "{bad}");
    }
}

#[test]
fn no_peer_is_left_empty_even_with_tiny_alpha() {
    let d = data::digits().subset(&(0..60).collect::<Vec<_>>());
    for seed in 0..5 {
        assert_is_partition(
            &partition(&d, 30, &Partition::Dirichlet { alpha: 0.01 }, seed),
            60,
        );
    }
}

fn feature_mean(d: &Dataset, range: std::ops::Range<usize>) -> Vec<f32> {
    let rows = d.features.slice(ndarray::s![range, ..]);
    rows.mean_axis(ndarray::Axis(0)).unwrap().to_vec()
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
}

#[test]
fn synthetic_heterogeneity_separates_groups() {
    let base = Synthetic {
        problem: SyntheticKind::Softmax,
        samples: 4000,
        features: 10,
        classes: 4,
        groups: 4,
        noise: 0.1,
        seed: 5,
        heterogeneity: 0.0,
    };
    let same = base.generate();
    assert_eq!(same, base.generate(), "seeded");
    let apart = Synthetic {
        heterogeneity: 2.0,
        ..base.clone()
    }
    .generate();
    let r = base.group_ranges();
    let gap = |d: &Dataset| {
        distance(
            &feature_mean(d, r[0].clone()),
            &feature_mean(d, r[1].clone()),
        )
    };
    assert!(gap(&same) < 0.3, "h=0 groups differ by {}", gap(&same));
    assert!(gap(&apart) > 2.0, "h=2 groups too close: {}", gap(&apart));
    // Label distributions: total variation between groups 0 and 1.
    let tv = |d: &Dataset| {
        let h = label_histograms(d, &[r[0].clone().collect(), r[1].clone().collect()]);
        h[0].iter()
            .zip(&h[1])
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / (2.0 * 1000.0)
    };
    assert!(
        tv(&same) < 0.1 && tv(&apart) > tv(&same),
        "tv {} vs {}",
        tv(&same),
        tv(&apart)
    );
    // Contiguous partition with peers = groups gives each peer its own group.
    assert_eq!(
        partition(&apart, 4, &Partition::Contiguous, 0)[2],
        r[2].clone().collect::<Vec<_>>()
    );
}

#[test]
fn synthetic_labels_are_learnable() {
    for (problem, spec) in [
        (SyntheticKind::Logistic, "logistic"),
        (SyntheticKind::Softmax, "softmax"),
        (SyntheticKind::Linear, "linear"),
    ] {
        let data = Synthetic {
            problem,
            samples: 3000,
            features: 8,
            classes: 3,
            groups: 1,
            heterogeneity: 0.0,
            noise: 0.1,
            seed: 1,
        }
        .generate();
        let (train, test) = data.train_test_split(0.2, 0);
        let model = spec
            .parse::<ModelSpec>()
            .unwrap()
            .build_for(&train, 0.0)
            .unwrap();
        let zero = model.evaluate(model.init(0).as_slice().unwrap(), &test);
        let config = TrainConfig {
            epochs: 10,
            ..TrainConfig::default()
        };
        let last = *CentralizedTrainer::new(model, train, std::sync::Arc::new(test), config)
            .run(|_| {})
            .last()
            .unwrap();
        match problem {
            // Bayes accuracy is below 1 (labels are sampled), but far above chance.
            SyntheticKind::Logistic => assert!(
                last.test.accuracy.unwrap() > 0.7 && last.test.loss < 0.6,
                "{last:?}"
            ),
            SyntheticKind::Softmax => assert!(last.test.accuracy.unwrap() > 0.65, "{last:?}"),
            // Squared loss reaches the noise floor ½·0.1² = 0.005 (within a factor).
            SyntheticKind::Linear => assert!(
                last.test.loss < 0.02 && zero.loss > 0.5,
                "{last:?} from {zero:?}"
            ),
        }
    }
}
