//! The deep learners train: the CNN on MNIST, the transformer on Shakespeare against the
//! unigram baseline; a restored learner continues bit-identically; text corpora split,
//! shard and sample as documented.
#![cfg(feature = "deep")]

use std::sync::Arc;

use murmur_gossip::data::{self, Dataset, TextCorpus, WindowSampler};
use murmur_gossip::deep::{DeepLearner, DeepSpec};
use murmur_gossip::learner::LocalLearner;
use murmur_gossip::optim::{OptimizerConfig, OptimizerKind, Schedule};

/// MNIST's first 8000 samples for training, the last 2000 for testing.
fn mnist_split() -> (Dataset, Arc<Dataset>) {
    let all = data::mnist();
    assert_eq!((all.len(), all.dim(), all.classes), (10_000, 784, Some(10)));
    let train: Vec<usize> = (0..8000).collect();
    let test: Vec<usize> = (8000..10_000).collect();
    (all.subset(&train), Arc::new(all.subset(&test)))
}

fn shakespeare_split() -> (TextCorpus, Arc<TextCorpus>) {
    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    let (train, valid) = text.split(0.1);
    (train, Arc::new(valid))
}

#[test]
fn cnn_learns_mnist() {
    let (train, test) = mnist_split();
    let model = DeepSpec::default().build_for_images(&train).unwrap();
    let cfg = OptimizerConfig {
        lr: 0.05,
        momentum: 0.9,
        schedule: Schedule::Constant,
        ..OptimizerConfig::default()
    };
    let mut learner = DeepLearner::images(model.clone(), train, test, cfg, 32, 1)
        .unwrap()
        .with_eval_limit(500);
    let mut p = model.init(0);
    let before = learner.evaluate(&p);
    // Untrained: about ln 10 = 2.30 nats and chance accuracy.
    assert!((before.loss - 10f32.ln()).abs() < 0.2, "{before:?}");
    for _ in 0..150 {
        learner.step(&mut p);
    }
    let after = learner.evaluate(&p);
    eprintln!("cnn: {before:?} -> {after:?}");
    // Measured: 2.30 -> 0.30 nats, 92% accuracy after 150 steps (4800 images, 0.6 epoch).
    // The bound asks for a third of that drop in loss and far less than that accuracy.
    assert!(after.loss < before.loss / 3.0, "{before:?} -> {after:?}");
    assert!(after.accuracy.unwrap() > 0.75, "{after:?}");
}

#[test]
fn transformer_beats_the_unigram_baseline_on_shakespeare() {
    let (train, valid) = shakespeare_split();
    let spec: DeepSpec = "transformer:layers=1,width=48,heads=4,context=32"
        .parse()
        .unwrap();
    let model = spec.build_for_text(&train).unwrap();
    let windows = 32;
    let unigram = train.unigram_loss(&valid.eval_targets(32, windows));
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 0.01,
        weight_decay: 0.0,
        schedule: Schedule::Constant,
        warmup_steps: 10,
        ..OptimizerConfig::default()
    };
    let mut learner = DeepLearner::text(model.clone(), train.clone(), valid, cfg, 16, 3)
        .unwrap()
        .with_eval_limit(windows);
    let mut p = model.init(0);
    let before = learner.evaluate(&p);
    assert!(
        (before.loss - (train.vocab_size() as f32).ln()).abs() < 0.1,
        "{before:?}"
    );
    let mut steps = 0;
    for _ in 0..150 {
        learner.step(&mut p);
        steps += 1;
    }
    let after = learner.evaluate(&p);
    eprintln!("transformer: unigram {unigram:.3}, {before:?} -> {after:?} after {steps} steps");
    // Measured: 4.40 (ln 80) -> 2.79 nats/char after 150 steps (2400 windows of 33
    // characters) against a unigram loss of 3.27 on the same 32 windows: beating it needs the
    // model to use the context, and it does by half a nat.
    assert!(
        f64::from(after.loss) < unigram,
        "{after:?} vs unigram {unigram}"
    );
}

/// `steps` steps straight against half of them, a save, a restore into a fresh learner and
/// the other half: the parameters and losses must agree to the bit.
fn resumes_exactly(fresh: impl Fn() -> DeepLearner, init: Vec<f32>, steps: usize) {
    let mut straight = fresh();
    let mut p = init.clone();
    let losses: Vec<f32> = (0..steps).map(|_| straight.step(&mut p)).collect();

    let mut first = fresh();
    let mut q = init;
    for _ in 0..steps / 2 {
        first.step(&mut q);
    }
    let state = first.save_state();
    let mut second = fresh();
    second.load_state(&state).unwrap();
    let rest: Vec<f32> = (steps / 2..steps).map(|_| second.step(&mut q)).collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p), bits(&q));
    assert_eq!(bits(&losses[steps / 2..]), bits(&rest));
    assert_eq!(straight.save_state(), second.save_state());
    // Corrupt state is refused and leaves the learner as it was.
    assert!(second.load_state(&state[..state.len() / 2]).is_err());
    assert_eq!(straight.save_state(), second.save_state());
}

#[test]
fn adamw_learners_resume_bit_exactly_after_save_and_restore() {
    let adamw = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-3,
        weight_decay: 0.01,
        warmup_steps: 2,
        ..OptimizerConfig::default().with_horizon(8)
    };
    let (train, test) = mnist_split();
    let small: Vec<usize> = (0..256).collect();
    let train = train.subset(&small);
    let cnn = "cnn:4,8,32"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_images(&train)
        .unwrap();
    let init = cnn.init(4);
    resumes_exactly(
        || {
            DeepLearner::images(
                cnn.clone(),
                train.clone(),
                test.clone(),
                adamw.clone(),
                16,
                9,
            )
            .unwrap()
        },
        init,
        8,
    );

    let (text, valid) = shakespeare_split();
    let shard = text.shard(2, 8);
    let tf = "transformer:layers=1,width=16,heads=2,context=16"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&shard)
        .unwrap();
    let init = tf.init(5);
    // Also with the half-batch noise estimate, whose average the state must carry.
    let corrected = OptimizerConfig {
        second_moment_peers: 8,
        ..adamw.clone()
    };
    for cfg in [adamw, corrected] {
        resumes_exactly(
            || {
                DeepLearner::text(tf.clone(), shard.clone(), valid.clone(), cfg.clone(), 4, 9)
                    .unwrap()
            },
            init.clone(),
            8,
        );
    }
}

#[test]
fn the_noise_corrected_second_moment_needs_an_even_batch_and_changes_the_step() {
    let (text, valid) = shakespeare_split();
    let shard = text.shard(0, 8);
    let tf = "transformer:layers=1,width=16,heads=2,context=16"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&shard)
        .unwrap();
    let adamw = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-3,
        ..OptimizerConfig::default().with_horizon(20)
    };
    let corrected = OptimizerConfig {
        second_moment_peers: 8,
        ..adamw.clone()
    };
    let err = DeepLearner::text(
        tf.clone(),
        shard.clone(),
        valid.clone(),
        corrected.clone(),
        3,
        0,
    )
    .unwrap_err();
    assert_eq!(err.setting, "batch_size");
    // The same batches: the corrected learner divides by a smaller second moment, so after a
    // few steps it has moved further from the start in total (never less: the estimate is
    // floored at v, the uncorrected one, divided by n, and capped at v).
    let run = |cfg: &OptimizerConfig| {
        let mut l =
            DeepLearner::text(tf.clone(), shard.clone(), valid.clone(), cfg.clone(), 8, 3).unwrap();
        let mut p = tf.init(1);
        for _ in 0..10 {
            l.step(&mut p);
        }
        let init = tf.init(1);
        p.iter()
            .zip(&init)
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum::<f64>()
    };
    let (plain, noisy) = (run(&adamw), run(&corrected));
    assert!(
        noisy > 1.2 * plain,
        "corrected moved {noisy}, plain {plain}"
    );
}

#[test]
fn learners_refuse_mismatched_data() {
    let (train, test) = mnist_split();
    let cnn = DeepSpec::default().build_for_images(&train).unwrap();
    let (text, valid) = shakespeare_split();
    let tf = "transformer"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    let cfg = OptimizerConfig::default();
    let err =
        DeepLearner::text(cnn.clone(), text.clone(), valid.clone(), cfg.clone(), 8, 0).unwrap_err();
    assert_eq!(err.setting, "data");
    let err = DeepLearner::images(tf.clone(), train.clone(), test.clone(), cfg.clone(), 8, 0)
        .unwrap_err();
    assert_eq!(err.setting, "data");
    let digits = data::digits();
    let err =
        DeepLearner::images(cnn.clone(), digits, test.clone(), cfg.clone(), 8, 0).unwrap_err();
    assert_eq!(err.setting, "features");
    let err = DeepLearner::text(
        tf.clone(),
        text.slice(0..64),
        valid.clone(),
        cfg.clone(),
        8,
        0,
    )
    .unwrap_err();
    assert_eq!(err.setting, "context");
    let other = Arc::new(TextCorpus::from_bytes(b"abc abc abc").unwrap());
    let err = DeepLearner::text(tf, text, other, cfg.clone(), 8, 0).unwrap_err();
    assert_eq!(err.setting, "vocab");
    let err = DeepLearner::images(cnn, train, test, cfg, 0, 0).unwrap_err();
    assert_eq!(err.setting, "batch_size");
}

#[test]
fn text_corpus_splits_shards_and_samples_as_documented() {
    let text = TextCorpus::from_bytes(b"hello, world").unwrap();
    assert_eq!(text.vocab(), b" ,dehlorw");
    assert_eq!(text.decode(text.tokens()), "hello, world");
    let (train, valid) = text.split(0.25);
    assert_eq!((train.len(), valid.len()), (9, 3));
    assert_eq!(valid.decode(valid.tokens()), "rld");
    assert_eq!(train.vocab(), text.vocab());
    // Shards are contiguous, disjoint and cover the text.
    let shards: Vec<TextCorpus> = (0..5).map(|i| text.shard(i, 5)).collect();
    let joined: Vec<u8> = shards.iter().flat_map(|s| s.tokens().to_vec()).collect();
    assert_eq!(joined, text.tokens());
    assert!(shards.iter().all(|s| s.len() == 2 || s.len() == 3));
    // Evaluation windows: consecutive, non-overlapping predictions.
    assert_eq!(text.eval_windows(4, 10), vec![0, 4]);
    assert_eq!(text.eval_windows(4, 1), vec![0]);
    assert_eq!(text.eval_targets(4, 10), text.tokens()[1..9]);
    // The unigram loss of a text on itself is its character entropy (up to add-one
    // smoothing), and positive.
    let uniform = TextCorpus::from_bytes(b"abababab").unwrap();
    let h = uniform.unigram_loss(uniform.tokens());
    assert!((h - 2f64.ln()).abs() < 1e-12, "{h}");
    // The sampler stays in range, resumes exactly and refuses another shard's state.
    let mut s = WindowSampler::new(100, 10, 4, 7);
    let mut copy = s.clone();
    s.next_batch();
    let state = s.state();
    let next: Vec<usize> = s.next_batch().to_vec();
    assert!(next.iter().all(|&p| p <= 90));
    copy.restore(state.clone()).unwrap();
    assert_eq!(copy.next_batch(), &next[..]);
    assert!(WindowSampler::new(99, 10, 4, 7).restore(state).is_err());
}
