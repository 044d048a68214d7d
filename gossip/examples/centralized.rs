//! The centralized reference run: one process trains a model on a whole training set and
//! prints train loss and test accuracy per epoch.
//!
//! `cargo run --release -p murmur-gossip --example centralized -- [--model softmax|logistic|linear|mlp:64]
//!  [--data digits|breast-cancer] [--epochs N] [--lr LR] [--batch B] [--seed S]`
//!
//! With no arguments: softmax regression on the bundled digits (the task defaults).

use std::process::ExitCode;
use std::time::Instant;

use murmur_gossip::task::{DataSource, TaskConfig};

fn parse_args(task: &mut TaskConfig) -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--model" => task.model = value.parse().map_err(|e: String| bad(&e))?,
            "--data" => {
                task.data = match value {
                    "digits" => DataSource::Digits,
                    "breast-cancer" => {
                        task.standardize = true;
                        DataSource::BreastCancer
                    }
                    other => return Err(format!("unknown data {other:?}")),
                }
            }
            "--epochs" => task.epochs = value.parse().map_err(|e| bad(&e))?,
            "--lr" => task.optimizer.lr = value.parse().map_err(|e| bad(&e))?,
            "--batch" => task.batch_size = value.parse().map_err(|e| bad(&e))?,
            "--seed" => task.seed = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut task = TaskConfig::default();
    if let Err(e) = parse_args(&mut task) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let prepared = match task.prepare() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "centralized SGD: model={} params={} train={} test={} batch={} lr={} momentum={}",
        task.model,
        prepared.dim(),
        prepared.train().len(),
        prepared.test().len(),
        task.batch_size,
        task.optimizer.lr,
        task.optimizer.momentum
    );
    println!(
        "{:>5} {:>10} {:>10} {:>9} {:>9}",
        "epoch", "train_loss", "test_loss", "test_acc", "lr"
    );
    let started = Instant::now();
    let mut trainer = prepared.centralized();
    let reports = trainer.run(|r| {
        let acc = r.test.accuracy.map_or("-".into(), |a| format!("{:.4}", a));
        println!(
            "{:>5} {:>10.4} {:>10.4} {:>9} {:>9.5}",
            r.epoch, r.train.loss, r.test.loss, acc, r.lr
        );
    });
    let Some(last) = reports.last() else {
        eprintln!("error: no epochs to run");
        return ExitCode::FAILURE;
    };
    println!(
        "summary: model={} epochs={} test_accuracy={} test_loss={:.4} train_loss={:.4} seconds={:.2}",
        task.model,
        last.epoch,
        last.test.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
        last.test.loss,
        last.train.loss,
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
