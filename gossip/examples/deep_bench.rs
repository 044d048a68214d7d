//! Step time of the deep models and the cost of moving the flat parameter vector in and out
//! of candle: `cargo run --release -p murmur-gossip --example deep_bench [-- STEPS]`.
//!
//! Per model: parameters, one training step (copy in, forward, backward, copy out; median of
//! STEPS after 5 warm-up steps, default 30), the two copies, their share of the step, and
//! the copies against two plain memcpys of the same bytes. Candle uses the current rayon
//! pool: set `RAYON_NUM_THREADS=1` to time one thread.

use std::time::{Duration, Instant};

use murmur_gossip::data::{self, TextCorpus};
use murmur_gossip::deep::{Batch, DeepModel, DeepSpec, StepProfile};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    name: &'static str,
    params: usize,
    step: Duration,
    copy: Duration,
    memcpy: Duration,
}

fn measure(name: &'static str, model: &DeepModel, batch: &Batch<'_>, steps: usize) -> Row {
    let params = model.init(0);
    let mut grad = vec![0f32; model.dim()];
    let mut dst = vec![0f32; model.dim()];
    let mut profiles: Vec<StepProfile> = Vec::new();
    let mut copies = Vec::new();
    for i in 0..steps + 5 {
        let profile = model.profile_step(&params, batch, &mut grad);
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&params));
        std::hint::black_box(&mut dst);
        let memcpy = t.elapsed();
        if i >= 5 {
            profiles.push(profile);
            copies.push(memcpy);
        }
    }
    Row {
        name,
        params: model.dim(),
        step: median(profiles.iter().map(|p| p.total()).collect()),
        copy: median(profiles.iter().map(|p| p.copy_in + p.copy_out).collect()),
        memcpy: median(copies),
    }
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("STEPS is a number"))
        .unwrap_or(30);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    println!("deep_bench: median of {steps} steps after 5 warm-up, rayon threads: {threads}");

    let mnist = data::mnist();
    let cnn = DeepSpec::default().build_for_images(&mnist).unwrap();
    let b = 32;
    let pixels: Vec<f32> = mnist
        .features
        .slice(ndarray::s![..b, ..])
        .iter()
        .copied()
        .collect();
    let labels: Vec<u32> = (0..b).map(|i| mnist.label(i) as u32).collect();
    let cnn_row = measure(
        "cnn:8,32,128 (MNIST, 32 images)",
        &cnn,
        &Batch::Images {
            pixels: &pixels,
            labels: &labels,
        },
        steps,
    );

    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    let tf = "transformer"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    let window = tf.window().unwrap();
    let windows = 16;
    let tokens: Vec<u8> = (0..windows)
        .flat_map(|k| text.tokens()[k * 1000..k * 1000 + window].to_vec())
        .collect();
    let tf_row = measure(
        "transformer 2x128, 4 heads, ctx 64 (16 windows)",
        &tf,
        &Batch::Windows { tokens: &tokens },
        steps,
    );

    println!(
        "{:<50} {:>9} {:>9} {:>14} {:>10} {:>12}",
        "model", "params", "step ms", "copy in+out ms", "copy share", "vs 2 memcpy"
    );
    for r in [&cnn_row, &tf_row] {
        println!(
            "{:<50} {:>9} {:>9.2} {:>14.3} {:>9.2}% {:>11.1}x",
            r.name,
            r.params,
            r.step.as_secs_f64() * 1e3,
            r.copy.as_secs_f64() * 1e3,
            100.0 * r.copy.as_secs_f64() / r.step.as_secs_f64(),
            r.copy.as_secs_f64() / (2.0 * r.memcpy.as_secs_f64()),
        );
    }
    println!(
        "summary: cnn_params={} cnn_step_ms={:.2} cnn_copy_share={:.4} transformer_params={} transformer_step_ms={:.2} transformer_copy_share={:.4}",
        cnn_row.params,
        cnn_row.step.as_secs_f64() * 1e3,
        cnn_row.copy.as_secs_f64() / cnn_row.step.as_secs_f64(),
        tf_row.params,
        tf_row.step.as_secs_f64() * 1e3,
        tf_row.copy.as_secs_f64() / tf_row.step.as_secs_f64(),
    );
}
