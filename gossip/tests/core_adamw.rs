//! AdamW against a hand-computed reference, its configuration defaults, and exact resumption
//! of an `SgdLearner` trained with it.

use std::sync::Arc;

use murmur_gossip::data;
use murmur_gossip::learner::{LocalLearner, SgdLearner};
use murmur_gossip::model::ModelSpec;
use murmur_gossip::optim::{
    AdamW, Optimizer, OptimizerConfig, OptimizerKind, OptimizerState, Schedule,
};

#[test]
fn adamw_matches_a_hand_computed_two_step_reference() {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 0.1,
        weight_decay: 0.01,
        schedule: Schedule::Constant,
        ..OptimizerConfig::default()
    };
    let mut adam = AdamW::new(cfg, 3);
    let mut p = [1.0f32, -2.0, 0.5];
    // Step 1 (β₁ = 0.9, β₂ = 0.999, ε = 1e-8), g = (0.5, −1, 0): decay p by 1 − 0.1·0.01;
    // m = 0.1·g, v = 0.001·g², m̂ = g, √v̂ = |g|, so p −= 0.1·sign(g) (0 where g = 0):
    // (0.999 − 0.1, −1.998 + 0.1, 0.4995).
    adam.step(&mut p, &[0.5, -1.0, 0.0]);
    let want1 = [0.899f32, -1.898, 0.4995];
    // Step 2, g = (−0.25, 2, 1): m = 0.9·m + 0.1·g = (0.02, 0.11, 0.1),
    // v = 0.999·v + 0.001·g² = (3.1225e-4, 4.999e-3, 1e-3), m̂ = m / 0.19, v̂ = v / 0.001999;
    // third entry: 0.4995·0.999 − 0.1·(0.1/0.19)/√(0.001/0.001999) = 0.424586819.
    let mut p2 = p;
    adam.step(&mut p2, &[-0.25, 2.0, 1.0]);
    let want2 = [0.871_467_3f32, -1.932_712_4, 0.424_586_8];
    for (got, want) in p.iter().zip(want1).chain(p2.iter().zip(want2)) {
        assert!((got - want).abs() <= 2e-6, "{got} vs {want}");
    }
    assert_eq!(adam.steps(), 2);
    let state = adam.state();
    assert_eq!(state.steps, 2);
    assert!((state.m[1] - 0.11).abs() < 1e-6 && (state.v[2] - 1e-3).abs() < 1e-7);
}

#[test]
fn adamw_uses_the_schedule_and_pytorch_defaults() {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        ..OptimizerConfig::default()
    };
    assert_eq!((cfg.beta1, cfg.beta2, cfg.eps), (0.9, 0.999, 1e-8));
    let parsed: OptimizerConfig =
        toml::from_str("kind = \"adamw\"\nlr = 0.003\nbeta2 = 0.99").unwrap();
    assert_eq!(parsed.kind, OptimizerKind::AdamW);
    assert_eq!((parsed.lr, parsed.beta1, parsed.beta2), (0.003, 0.9, 0.99));
    let default: OptimizerConfig = toml::from_str("lr = 0.5").unwrap();
    assert_eq!(default.kind, OptimizerKind::Sgd);
    // Warm-up over 4 steps: the first step moves by a quarter of the rate (Adam's first step
    // is lr·sign(g)).
    let mut opt = Optimizer::new(
        OptimizerConfig {
            kind: OptimizerKind::AdamW,
            lr: 0.2,
            warmup_steps: 4,
            schedule: Schedule::Constant,
            ..OptimizerConfig::default()
        },
        1,
    );
    let mut p = [0.0f32];
    assert_eq!(opt.step(&mut p, &[3.0]), 0.05);
    assert!((p[0] + 0.05).abs() < 1e-7, "{}", p[0]);
    // A state of the other kind is refused and changes nothing.
    let before = opt.state();
    let sgd = Optimizer::new(OptimizerConfig::default(), 1).state();
    assert!(opt.restore(sgd).is_err());
    assert_eq!(opt.state(), before);
    assert!(matches!(before, OptimizerState::AdamW(_)));
}

#[test]
fn sgd_learner_with_adamw_resumes_bit_exactly() {
    let all = data::digits();
    let (train, test) = all.train_test_split(0.2, 0);
    let model = ModelSpec::Mlp { hidden: vec![16] }
        .build_for(&train, 1e-4)
        .unwrap();
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 0.01,
        weight_decay: 0.01,
        ..OptimizerConfig::default().with_horizon(40)
    };
    let test = Arc::new(test);
    let fresh = || {
        SgdLearner::new(
            model.clone(),
            train.clone(),
            test.clone(),
            cfg.clone(),
            32,
            4,
        )
    };
    let init = model.init(2).to_vec();

    let mut straight = fresh();
    let mut p = init.clone();
    let losses: Vec<f32> = (0..20).map(|_| straight.step(&mut p)).collect();

    let mut first = fresh();
    let mut q = init.clone();
    for _ in 0..10 {
        first.step(&mut q);
    }
    let state = first.save_state();
    let mut second = fresh();
    second.load_state(&state).unwrap();
    let rest: Vec<f32> = (0..10).map(|_| second.step(&mut q)).collect();
    assert_eq!(p, q);
    assert_eq!(losses[10..], rest[..]);
    assert!(losses[19] < losses[0], "AdamW trains: {losses:?}");
}

/// `second_moment_peers = n`: fed half-batch gradients of a noisy objective, the corrected
/// second moment `max(v − (1 − 1/n)·w, v/n)` estimates what all-reduce's AdamW sees on the
/// mean of n such batches (mean² + s²/n), where the peer's own `v` sees mean² + s².
#[test]
fn the_noise_corrected_second_moment_matches_the_mean_of_n_batches() {
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    let n = 8u32;
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-9,
        beta2: 0.99999,
        schedule: Schedule::Constant,
        second_moment_peers: n,
        ..OptimizerConfig::default()
    };
    // Per coordinate: the mean gradient μ and the full batch's noise std s.
    let (mu, s) = ([0.1f32, 1.0, 0.0, -0.3], [1.0f32, 0.1, 0.5, 2.0]);
    let mut peer = AdamW::new(cfg.clone(), 4);
    let mut allreduce = AdamW::new(
        OptimizerConfig {
            second_moment_peers: 0,
            ..cfg.clone()
        },
        4,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut gauss = || rng.sample::<f32, _>(StandardNormal);
    let (mut p, mut q) = ([0.0f32; 4], [0.0f32; 4]);
    let steps = 300_000;
    for _ in 0..steps {
        // Two halves, each with twice the full batch's variance.
        let (mut g, mut noise) = ([0.0f32; 4], [0.0f32; 4]);
        let mut mean = [0.0f32; 4];
        for k in 0..4 {
            let half = s[k] * std::f32::consts::SQRT_2;
            let (a, b) = (mu[k] + half * gauss(), mu[k] + half * gauss());
            g[k] = (a + b) / 2.0;
            noise[k] = ((a - b) / 2.0).powi(2);
            let sum: f32 = (0..n).map(|_| s[k] * gauss()).sum();
            mean[k] = mu[k] + sum / n as f32;
        }
        peer.step_with_noise(&mut p, &g, &noise);
        allreduce.step(&mut q, &mean);
    }
    let (sp, sa) = (peer.state(), allreduce.state());
    let c2 = 1.0 - f64::from(cfg.beta2).powi(steps);
    for k in 0..4 {
        let v = f64::from(sp.v[k]) / c2;
        let w = f64::from(sp.noise[k]) / c2;
        let corrected = (v - (1.0 - 1.0 / f64::from(n)) * w).max(v / f64::from(n));
        let want = f64::from(mu[k]).powi(2) + f64::from(s[k]).powi(2) / f64::from(n);
        let seen = f64::from(sa.v[k]) / c2;
        assert!(
            (seen / want - 1.0).abs() < 0.05,
            "all-reduce v {seen} vs {want}"
        );
        assert!(
            (corrected / want - 1.0).abs() < 0.15,
            "coordinate {k}: {corrected} vs {want}"
        );
        // The uncorrected moment is mean² + s², far off wherever the noise dominates.
        let raw = f64::from(mu[k]).powi(2) + f64::from(s[k]).powi(2);
        assert!((v / raw - 1.0).abs() < 0.05, "peer v {v} vs {raw}");
    }
}
