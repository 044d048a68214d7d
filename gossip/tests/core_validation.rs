//! Nonsense settings are refused before training, with the setting's name and its range, and
//! a model that does not fit the data's labels says so in words.

use murmur_gossip::model::ModelSpec;
use murmur_gossip::optim::OptimizerConfig;
use murmur_gossip::task::TaskConfig;

#[test]
fn learning_rates_that_train_nothing_are_refused_with_the_field_name() {
    for (lr, shown) in [(f32::NAN, "NaN"), (-0.5, "-0.5"), (0.0, "0")] {
        let config = OptimizerConfig {
            lr,
            ..OptimizerConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err, format!("lr = {shown} must be a finite number > 0"));
        let task = TaskConfig {
            optimizer: config,
            ..TaskConfig::default()
        };
        let err = task.prepare().unwrap_err().to_string();
        assert!(err.contains(&format!("optimizer.lr = {shown}")), "{err}");
    }
    OptimizerConfig::default().validate().unwrap();
    let err = OptimizerConfig {
        momentum: 1.0,
        ..OptimizerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.contains("momentum = 1 must be in [0, 1)"), "{err}");
}

#[test]
fn a_model_that_does_not_fit_the_labels_is_refused_in_words() {
    let prepare = |model: ModelSpec| {
        TaskConfig {
            model,
            ..TaskConfig::default()
        }
        .prepare()
        .unwrap_err()
        .to_string()
    };
    // Linear regression on the 10 digit classes used to train and report accuracy 0.
    let err = prepare(ModelSpec::Linear);
    assert!(
        err.contains("model linear fits a regression target, but this data has 10 classes")
            && err.contains("use softmax"),
        "{err}"
    );
    let err = prepare(ModelSpec::Logistic);
    assert!(
        err.contains("model logistic needs exactly 2 classes, but this data has 10"),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
}
