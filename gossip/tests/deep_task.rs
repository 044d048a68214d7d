//! The deep models through the task, as the simulator and the daemon build them: bundled
//! MNIST and Shakespeare need no path, shards cover the data, learners come from any shard,
//! and wrong shapes are refused at prepare time with the setting's name.
#![cfg(feature = "deep")]

use murmur_gossip::data;
use murmur_gossip::data::Partition;
use murmur_gossip::task::{DataSource, Shard, TEXT_BLOCK, TaskConfig};

fn task(data: DataSource, model: &str) -> TaskConfig {
    TaskConfig {
        data,
        model: model.parse().unwrap(),
        ..TaskConfig::default()
    }
}

#[test]
fn mnist_with_the_cnn_splits_by_position_and_builds_learners_on_every_shard() {
    let t = task(DataSource::Mnist, "cnn").prepare().unwrap();
    assert_eq!(t.dim(), 73_594);
    assert_eq!((t.train().len(), t.test().len()), (8000, 2000));
    let all = data::mnist();
    // The test set is the last 2000 digits of the file, in order.
    assert_eq!(t.test().features.row(0), all.features.row(8000));
    assert_eq!(t.test().features.row(1999), all.features.row(9999));
    let shards = t.peer_shards(16);
    assert_eq!(shards.iter().map(Shard::len).sum::<usize>(), 8000);
    let mut learner = t.learner_for(&shards[3], 3).unwrap();
    let mut params = t.init_params(0).to_vec();
    let before = params.clone();
    let loss = learner.step(&mut params);
    assert!(loss.is_finite() && params != before);
    assert!(
        t.evaluation_note()
            .contains("first 1000 of 2000 test images")
    );
    assert_eq!(t.unigram_loss(), None);
}

#[test]
fn shakespeare_with_the_transformer_shards_the_text_and_knows_its_unigram_loss() {
    let t = task(
        DataSource::Shakespeare,
        "transformer:layers=1,width=32,heads=2,context=16",
    )
    .prepare()
    .unwrap();
    assert!(t.is_text());
    let shards = t.peer_shards(8);
    // iid (the default): blocks of TEXT_BLOCK tokens dealt in turn, disjoint, covering the
    // training text, every peer's blocks spread over all of it.
    let mut blocks: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (peer, s) in shards.iter().enumerate() {
        let Shard::Text(b) = s else {
            panic!("text shards")
        };
        assert!(
            b.first().unwrap().start < TEXT_BLOCK * 8,
            "peer {peer} starts late"
        );
        assert!(
            b.last().unwrap().end > t.train_len() - TEXT_BLOCK * 8,
            "peer {peer} ends early"
        );
        blocks.extend(b.iter().map(|r| (peer, r.clone())));
    }
    blocks.sort_by_key(|(_, r)| r.start);
    let mut next = 0;
    for (i, (peer, r)) in blocks.iter().enumerate() {
        assert_eq!(r.start, next);
        assert_eq!(*peer, i % 8, "block {i} dealt in turn");
        next = r.end;
    }
    assert_eq!(next, t.train_len());
    // contiguous: one block per peer, in order.
    let mut config = task(
        DataSource::Shakespeare,
        "transformer:layers=1,width=32,heads=2,context=16",
    );
    config.partition = Partition::Contiguous;
    let contiguous = config.prepare().unwrap().peer_shards(8);
    let mut next = 0;
    for s in &contiguous {
        let Shard::Text(b) = s else {
            panic!("text shards")
        };
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].start, next);
        next = b[0].end;
    }
    assert_eq!(next, t.train_len());
    // A partition by labels means nothing for text.
    config.partition = Partition::Dirichlet { alpha: 0.5 };
    let err = config.prepare().unwrap_err().to_string();
    assert!(err.contains("partition") && err.contains("text"), "{err}");
    // The last 20% of the text is validation.
    let total = data::shakespeare().len();
    assert_eq!(t.train_len(), total - (total as f64 * 0.2).round() as usize);
    let unigram = t.unigram_loss().unwrap();
    // Character frequencies of English text carry 3 to 3.5 nats of entropy.
    assert!((2.5..4.0).contains(&unigram), "{unigram}");
    let learner = t.learner_for(&shards[7], 7).unwrap();
    let eval = learner.evaluate(&t.init_params(0).to_vec());
    // An untrained model predicts about uniformly over the vocabulary: ln(vocab) nats.
    assert!(eval.loss > unigram as f32, "{} vs {unigram}", eval.loss);
    assert!(t.evaluation_note().contains("nats per character"));
}

#[test]
fn wrong_shapes_are_refused_naming_the_setting() {
    let cases: &[(DataSource, &str, &str)] = &[
        (DataSource::BreastCancer, "cnn", "features"),
        (DataSource::Digits, "cnn", "features"),
        (DataSource::Mnist, "cnn:0,16,64", "c1"),
        (DataSource::Mnist, "transformer", "data"),
        (DataSource::Shakespeare, "softmax", "model"),
        (DataSource::Shakespeare, "cnn", "data"),
        (DataSource::Shakespeare, "transformer:heads=0", "heads"),
        (
            DataSource::Shakespeare,
            "transformer:width=100,heads=3",
            "heads",
        ),
        (DataSource::Shakespeare, "transformer:layers=0", "layers"),
        (
            DataSource::Shakespeare,
            "transformer:context=2000000",
            "context",
        ),
    ];
    for (data, model, setting) in cases {
        let err = task(data.clone(), model).prepare().unwrap_err().to_string();
        assert!(
            err.contains(setting),
            "{model} on {data:?}: {err:?} does not name {setting}"
        );
        println!("{model} on {data:?}: {err}");
    }
}
