//! The optimizer against hand-computed updates, schedules at known points, state restore and
//! convergence on a quadratic; each model family trains on real data.

use std::sync::Arc;

use murmur_gossip::data::{self, Standardizer};
use murmur_gossip::model::ModelSpec;
use murmur_gossip::optim::{OptimizerConfig, Schedule, Sgd};
use murmur_gossip::task::{DataSource, TaskConfig};
use murmur_gossip::train::{CentralizedTrainer, TrainConfig};

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn heavy_ball_nesterov_and_weight_decay_match_hand_computation() {
    let base = OptimizerConfig {
        lr: 0.5,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.1,
        schedule: Schedule::Constant,
        warmup_steps: 0,
        ..OptimizerConfig::default()
    };
    // Two steps on one parameter p0 = 1 with gradients 2 then -1.
    // heavy-ball: g1 = 2 + 0.1 = 2.1, v1 = 2.1, p1 = 1 - 1.05 = -0.05;
    //   g2 = -1 - 0.005 = -1.005, v2 = 1.89 - 1.005 = 0.885, p2 = -0.05 - 0.4425 = -0.4925.
    let mut sgd = Sgd::new(base.clone(), 1);
    let mut p = [1.0f32];
    sgd.step(&mut p, &[2.0]);
    assert!(close(p[0], -0.05), "{}", p[0]);
    sgd.step(&mut p, &[-1.0]);
    assert!(close(p[0], -0.4925), "{}", p[0]);
    // Nesterov: p1 = 1 - 0.5·(2.1 + 0.9·2.1) = -0.995;
    //   g2 = -1 - 0.0995 = -1.0995, v2 = 1.89 - 1.0995 = 0.7905,
    //   p2 = -0.995 - 0.5·(-1.0995 + 0.71145) = -0.800975.
    let mut nag = Sgd::new(
        OptimizerConfig {
            nesterov: true,
            ..base.clone()
        },
        1,
    );
    let mut p = [1.0f32];
    nag.step(&mut p, &[2.0]);
    assert!(close(p[0], -0.995), "{}", p[0]);
    nag.step(&mut p, &[-1.0]);
    assert!(close(p[0], -0.800_975), "{}", p[0]);
    // Plain SGD: p1 = 1 - 0.5·2.1.
    let mut plain = Sgd::new(
        OptimizerConfig {
            momentum: 0.0,
            ..base
        },
        1,
    );
    let mut p = [1.0f32];
    plain.step(&mut p, &[2.0]);
    assert!(close(p[0], -0.05));
    assert!(plain.state().velocity.is_empty());
}

#[test]
fn schedules_at_known_points() {
    let step: Schedule = "step:10:0.5".parse().unwrap();
    assert_eq!(
        [
            step.factor(0),
            step.factor(9),
            step.factor(10),
            step.factor(25)
        ],
        [1.0, 1.0, 0.5, 0.25]
    );
    let cos: Schedule = "cosine:100:0.1".parse().unwrap();
    assert!(
        close(cos.factor(0), 1.0)
            && close(cos.factor(50), 0.55)
            && close(cos.factor(100), 0.1)
            && close(cos.factor(500), 0.1)
    );
    let open: Schedule = "cosine".parse().unwrap();
    assert_eq!(open.factor(1000), 1.0);
    let cfg = OptimizerConfig {
        lr: 2.0,
        schedule: open,
        warmup_steps: 4,
        ..OptimizerConfig::default()
    }
    .with_horizon(100);
    assert_eq!(
        cfg.schedule,
        Schedule::Cosine {
            total_steps: 100,
            floor: 0.0
        }
    );
    assert!(close(cfg.lr_at(0), 0.5) && close(cfg.lr_at(1), 1.0 * cfg.schedule.factor(1)));
    assert!(close(cfg.lr_at(50), 1.0) && close(cfg.lr_at(100), 0.0));
    // A set horizon is not overwritten.
    assert_eq!(cfg.clone().with_horizon(7).schedule, cfg.schedule);
    for text in ["constant", "step:10:0.5", "cosine:100:0.1"] {
        assert_eq!(text.parse::<Schedule>().unwrap().to_string(), text);
    }
    for bad in ["step:0:0.5", "step:10", "cosine:x", "cosine:10:2", "linear"] {
        assert!(bad.parse::<Schedule>().is_err(), "{bad}");
    }
}

#[test]
fn momentum_converges_on_an_ill_conditioned_quadratic() {
    // f(p) = ½ Σ c_i p_i², c from 1 to 100: plain SGD at lr 1/100 is slow on the flat
    // direction, heavy-ball and Nesterov are much faster (Polyak 1964).
    let c: Vec<f32> = (0..10).map(|i| 1.0 + 11.0 * i as f32).collect();
    let run = |cfg: OptimizerConfig| {
        let mut sgd = Sgd::new(cfg, c.len());
        let mut p = vec![1.0f32; c.len()];
        let mut g = vec![0.0f32; c.len()];
        for _ in 0..100 {
            for k in 0..c.len() {
                g[k] = c[k] * p[k];
            }
            sgd.step(&mut p, &g);
        }
        p.iter().zip(&c).map(|(p, c)| 0.5 * c * p * p).sum::<f32>()
    };
    let base = OptimizerConfig {
        lr: 0.01,
        momentum: 0.0,
        schedule: Schedule::Constant,
        ..OptimizerConfig::default()
    };
    let plain = run(base.clone());
    let heavy = run(OptimizerConfig {
        momentum: 0.9,
        ..base.clone()
    });
    let nesterov = run(OptimizerConfig {
        momentum: 0.9,
        nesterov: true,
        ..base
    });
    assert!(plain > 0.05, "plain {plain}");
    assert!(
        heavy < plain * 0.1 && nesterov < plain * 0.1,
        "plain {plain} heavy {heavy} nesterov {nesterov}"
    );
}

#[test]
fn optimizer_state_restores_and_refuses_wrong_sizes() {
    let cfg = OptimizerConfig::default().with_horizon(50);
    let mut a = Sgd::new(cfg.clone(), 3);
    let mut p = [1.0, 2.0, 3.0];
    for _ in 0..5 {
        a.step(&mut p, &[0.1, -0.2, 0.3]);
    }
    let mut b = Sgd::new(cfg.clone(), 3);
    b.restore(a.state()).unwrap();
    assert_eq!(b.steps(), 5);
    let (mut pa, mut pb) = (p, p);
    a.step(&mut pa, &[1.0, 1.0, 1.0]);
    b.step(&mut pb, &[1.0, 1.0, 1.0]);
    assert_eq!(pa, pb);
    assert!(Sgd::new(cfg, 4).restore(a.state()).is_err());
}

#[test]
fn logistic_regression_on_breast_cancer() {
    let (mut train, mut test) = data::breast_cancer().train_test_split(0.2, 0);
    let s = Standardizer::fit(&train);
    s.apply(&mut train);
    s.apply(&mut test);
    let model = ModelSpec::Logistic.build_for(&train, 1e-3).unwrap();
    let cfg = TrainConfig {
        epochs: 20,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let last = *CentralizedTrainer::new(model, train, Arc::new(test), cfg)
        .run(|_| {})
        .last()
        .unwrap();
    assert!(last.test.accuracy.unwrap() >= 0.93, "{last:?}");
}

#[test]
fn mlp_on_digits_through_the_task() {
    let task = TaskConfig {
        model: "mlp:32".parse().unwrap(),
        epochs: 15,
        ..TaskConfig::default()
    };
    let reports = task.prepare().unwrap().centralized().run(|_| {});
    let last = reports.last().unwrap();
    assert!(last.test.accuracy.unwrap() >= 0.95, "{last:?}");
    // The hidden layer lets it fit the training set better than softmax regression can.
    assert!(last.train.loss < 0.08, "{last:?}");
}

#[test]
fn synthetic_source_in_a_task_gives_each_peer_its_group() {
    let text = r#"
        model = "softmax"
        partition = "contiguous"
        test_fraction = 0.1
        [data]
        kind = "synthetic"
        problem = "softmax"
        samples = 2000
        features = 6
        classes = 3
        groups = 4
        heterogeneity = 1.5
    "#;
    let task: TaskConfig = toml::from_str(text).unwrap();
    assert!(matches!(task.data, DataSource::Synthetic(_)));
    let prepared = task.prepare().unwrap();
    assert_eq!(prepared.train().len() + prepared.test().len(), 2000);
    let DataSource::Synthetic(syn) = &task.data else {
        unreachable!()
    };
    let all = syn.generate();
    // Peer 1's shard holds only rows of group 1 (the split keeps the group order).
    let shard = prepared.learner(1, 4).shard().clone();
    let group1 = all.subset(&syn.group_ranges()[1].clone().collect::<Vec<_>>());
    let rows: Vec<Vec<f32>> = group1
        .features
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    assert!(
        shard
            .features
            .rows()
            .into_iter()
            .all(|r| rows.contains(&r.to_vec()))
    );
    assert!(shard.len() > 400);
}
