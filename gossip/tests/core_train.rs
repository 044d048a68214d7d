//! The centralized trainer, the SGD learner's checkpointable state and the task config.

use std::sync::Arc;

use murmur_gossip::data::{self, Dataset};
use murmur_gossip::learner::{LocalLearner, SgdLearner};
use murmur_gossip::model::ModelSpec;
use murmur_gossip::optim::OptimizerConfig;
use murmur_gossip::task::{DataSource, TaskConfig};

#[test]
fn default_task_reaches_96_percent_on_digits() {
    let task = TaskConfig::default();
    assert_eq!(task.data, DataSource::Digits);
    assert_eq!(task.model, ModelSpec::Softmax);
    let prepared = task.prepare().unwrap();
    assert_eq!(prepared.train().len() + prepared.test().len(), 1797);
    let reports = prepared.centralized().run(|_| {});
    assert_eq!(reports.len(), task.epochs);
    let last = reports.last().unwrap();
    let acc = last.test.accuracy.unwrap();
    assert!(acc >= 0.96, "test accuracy {acc}");
    // Training made progress: loss fell well below log(10) ≈ 2.30 of the zero model.
    assert!(reports[0].train.loss < 2.3 && last.train.loss < 0.5 * reports[0].train.loss);
}

#[test]
fn learner_resumes_exactly_from_saved_state() {
    let digits = data::digits();
    let (train, test) = digits.train_test_split(0.2, 3);
    let model = ModelSpec::Softmax.build_for(&train, 1e-4).unwrap();
    let opt = OptimizerConfig {
        nesterov: true,
        ..OptimizerConfig::default().with_horizon(200)
    };
    let make = || {
        SgdLearner::new(
            model.clone(),
            train.clone(),
            Arc::new(test.clone()),
            opt.clone(),
            16,
            9,
        )
    };
    let mut a = make();
    let mut pa = vec![0f32; a.dim()];
    for _ in 0..37 {
        a.step(&mut pa);
    }
    let saved = a.save_state();
    let mut pb = pa.clone();
    let mut b = make();
    b.load_state(&saved).unwrap();
    for _ in 0..50 {
        let la = a.step(&mut pa);
        let lb = b.step(&mut pb);
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    assert_eq!(pa, pb);

    // A fresh learner that did not load the state diverges (momentum and sampler matter).
    let mut c = make();
    let mut pc = vec![0f32; c.dim()];
    for _ in 0..37 {
        c.step(&mut pc);
    }
    let mut fresh = make();
    let mut pf = pc.clone();
    c.step(&mut pc);
    fresh.step(&mut pf);
    assert_ne!(pc, pf);

    // Garbage or a state for another shard is refused and changes nothing.
    let before = b.save_state();
    assert!(b.load_state(&saved[..saved.len() / 2]).is_err());
    let small = Dataset::subset(&train, &(0..100).collect::<Vec<_>>());
    let other = SgdLearner::new(
        model.clone(),
        small,
        Arc::new(test.clone()),
        opt.clone(),
        16,
        9,
    );
    assert!(b.load_state(&other.save_state()).is_err());
    assert_eq!(b.save_state(), before);
}

#[test]
fn task_config_reads_toml_with_defaults() {
    let text = r#"
        model = "mlp:16"
        partition = "dirichlet:0.3"
        batch_size = 8
        [optimizer]
        lr = 0.05
        schedule = "step:100:0.5"
    "#;
    let task: TaskConfig = toml::from_str(text).unwrap();
    assert_eq!(task.model, ModelSpec::Mlp { hidden: vec![16] });
    assert_eq!(task.batch_size, 8);
    assert_eq!(task.optimizer.lr, 0.05);
    assert_eq!(task.optimizer.momentum, OptimizerConfig::default().momentum);
    assert_eq!(task.data, DataSource::Digits);
    let back: TaskConfig = toml::from_str(&toml::to_string(&task).unwrap()).unwrap();
    assert_eq!(back, task);
    // "cnn" and "transformer" are models now (feature `deep`); an unknown name is refused.
    assert!(toml::from_str::<TaskConfig>("model = \"resnet\"").is_err());
    assert!(toml::from_str::<TaskConfig>("partition = \"dirichlet:-1\"").is_err());
}

#[test]
fn peers_get_disjoint_shards_covering_the_training_split() {
    let prepared = TaskConfig::default().prepare().unwrap();
    let peers = 8;
    let mut total = 0;
    for i in 0..peers {
        let learner = prepared.learner(i, peers);
        assert_eq!(learner.dim(), prepared.dim());
        total += learner.shard().len();
    }
    assert_eq!(total, prepared.train().len());
    let shards = prepared.shards(peers);
    let mut seen = vec![false; prepared.train().len()];
    for s in &shards {
        for &i in s {
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "sample {i} dealt twice"
            );
        }
    }
    // Same config, same fingerprint; another model, another fingerprint.
    assert_eq!(
        prepared.fingerprint(),
        TaskConfig::default().prepare().unwrap().fingerprint()
    );
    let mlp = TaskConfig {
        model: "mlp:8".parse().unwrap(),
        ..TaskConfig::default()
    };
    assert_ne!(prepared.fingerprint(), mlp.prepare().unwrap().fingerprint());
}
