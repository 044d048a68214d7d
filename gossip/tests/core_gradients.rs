//! Every model's analytic gradient against central finite differences of its own loss.

use murmur_gossip::data::Dataset;
use murmur_gossip::model::{Model, ModelSpec};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPS: f32 = 1e-3;

/// A small random batch: `n × d` features in N(0,1)-ish range, targets for `classes`.
fn batch(n: usize, d: usize, classes: Option<usize>, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.5f32..1.5));
    let y = Array1::from_shape_fn(n, |_| match classes {
        Some(k) => rng.random_range(0..k) as f32,
        None => rng.random_range(-2f32..2.0),
    });
    Dataset::new(x, y, classes).unwrap()
}

fn random_params(model: &Model, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..model.dim())
        .map(|_| rng.random_range(-0.5f32..0.5))
        .collect()
}

/// Largest violation of `|analytic − numeric| ≤ 2e-3 + 2e-2·|numeric|` over all coordinates
/// (> 1 means the check fails).
fn worst_violation(model: &Model, params: &[f32], data: &Dataset, analytic: &[f32]) -> f32 {
    let mut p = params.to_vec();
    let mut worst = 0f32;
    for k in 0..p.len() {
        let orig = p[k];
        p[k] = orig + EPS;
        let up = f64::from(model.loss(&p, data.features.view(), data.targets.view()));
        p[k] = orig - EPS;
        let down = f64::from(model.loss(&p, data.features.view(), data.targets.view()));
        p[k] = orig;
        let numeric = ((up - down) / (2.0 * f64::from(EPS))) as f32;
        let tol = 2e-3 + 2e-2 * numeric.abs();
        worst = worst.max((analytic[k] - numeric).abs() / tol);
    }
    worst
}

fn check(spec: &str, classes: Option<usize>, l2: f32) {
    let spec: ModelSpec = spec.parse().unwrap();
    let data = batch(12, 5, classes, 1);
    let model = spec.build_for(&data, l2).unwrap();
    let params = random_params(&model, 2);
    let mut grad = vec![f32::NAN; model.dim()];
    let loss = model.loss_grad(
        &params,
        data.features.view(),
        data.targets.view(),
        &mut grad,
    );
    let plain = model.loss(&params, data.features.view(), data.targets.view());
    assert!(
        (loss - plain).abs() <= 1e-6 * plain.abs().max(1.0),
        "{spec}: loss_grad and loss disagree"
    );
    let worst = worst_violation(&model, &params, &data, &grad);
    assert!(
        worst <= 1.0,
        "{spec} l2={l2}: gradient off by {worst}x the tolerance"
    );

    // The check itself must be able to fail: a gradient 10% too large, or one coordinate
    // nudged, is caught.
    let scaled: Vec<f32> = grad.iter().map(|g| g * 1.1).collect();
    assert!(
        worst_violation(&model, &params, &data, &scaled) > 1.0,
        "{spec}: scaled gradient passed"
    );
    let mut nudged = grad.clone();
    let last = nudged.len() - 1;
    nudged[last] += 0.05 * nudged[last].abs() + 0.01;
    assert!(
        worst_violation(&model, &params, &data, &nudged) > 1.0,
        "{spec}: nudged gradient passed"
    );
}

#[test]
fn linear_regression_gradient() {
    check("linear", None, 0.0);
    check("linear", None, 0.3);
}

#[test]
fn logistic_regression_gradient() {
    check("logistic", Some(2), 0.0);
    check("logistic", Some(2), 0.3);
}

#[test]
fn softmax_regression_gradient() {
    check("softmax", Some(4), 0.0);
    check("softmax", Some(4), 0.3);
}

#[test]
fn mlp_gradients() {
    check("mlp:7", Some(3), 0.0);
    check("mlp:6,4", Some(3), 0.1);
    check("mlp:5,4,3", Some(2), 0.0);
}

#[test]
fn gradient_is_overwritten_not_accumulated() {
    let data = batch(8, 3, Some(3), 5);
    let model = ModelSpec::Softmax.build_for(&data, 0.0).unwrap();
    let params = random_params(&model, 6);
    let mut a = vec![0.0; model.dim()];
    let mut b = vec![123.0; model.dim()];
    model.loss_grad(&params, data.features.view(), data.targets.view(), &mut a);
    model.loss_grad(&params, data.features.view(), data.targets.view(), &mut b);
    assert_eq!(a, b);
}

#[test]
fn parameter_counts_and_specs() {
    for (text, d, k, dim) in [
        ("linear", 64, None, 65),
        ("logistic", 30, Some(2), 31),
        ("softmax", 64, Some(10), 650),
        ("mlp:32", 64, Some(10), 64 * 32 + 32 + 32 * 10 + 10),
        (
            "mlp:64,32",
            64,
            Some(10),
            64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10,
        ),
    ] {
        let spec: ModelSpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
        assert_eq!(spec.build(d, k, 0.0).unwrap().dim(), dim, "{text}");
    }
    assert!("mlp:".parse::<ModelSpec>().is_err());
    assert!("mlp:0".parse::<ModelSpec>().is_err());
    assert!("resnet".parse::<ModelSpec>().is_err());
    // The deep models parse as models but are built by the task, not by ModelSpec::build.
    #[cfg(feature = "deep")]
    assert!(
        "cnn"
            .parse::<ModelSpec>()
            .unwrap()
            .build(784, Some(10), 0.0)
            .is_err()
    );
    assert!(ModelSpec::Logistic.build(4, Some(3), 0.0).is_err());
    assert!(ModelSpec::Softmax.build(4, None, 0.0).is_err());
}
