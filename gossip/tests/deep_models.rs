//! The deep models: gradients against central finite differences (in f64), the parameter
//! layout, the flat-vector round trip through candle, spec strings, refused shapes, seeded
//! initialisation and determinism across thread counts.
#![cfg(feature = "deep")]

use murmur_gossip::data::{self, Dataset, TextCorpus};
use murmur_gossip::deep::{Batch, DataShape, DeepModel, DeepSpec};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny_cnn() -> DeepModel {
    "cnn:2,3,4"
        .parse::<DeepSpec>()
        .unwrap()
        .build(DataShape::Images {
            features: 16 * 16,
            classes: Some(3),
        })
        .unwrap()
}

fn tiny_transformer() -> DeepModel {
    "transformer:layers=2,width=8,heads=2,context=5"
        .parse::<DeepSpec>()
        .unwrap()
        .build(DataShape::Text { vocab: 7, len: 100 })
        .unwrap()
}

/// Three coordinates of every tensor (first, middle, last), so each layer's gradient is
/// checked.
fn probe(model: &DeepModel) -> Vec<(String, usize)> {
    model
        .layout()
        .entries()
        .iter()
        .flat_map(|e| {
            [0, e.len / 2, e.len - 1]
                .into_iter()
                .map(move |k| (format!("{}[{k}]", e.name), e.offset + k))
        })
        .collect()
}

/// Central differences of the f64 loss at `probe` coordinates against the analytic gradient.
fn check_gradient(model: &DeepModel, params: &[f64], batch: &Batch<'_>) {
    let mut grad = vec![0.0; model.dim()];
    let loss = model.loss_grad_f64(params, batch, &mut grad);
    assert!(loss.is_finite() && loss > 0.0);
    assert!(
        (model.loss_f64(params, batch) - loss).abs() < 1e-12,
        "loss with and without the gradient"
    );
    let h = 1e-6;
    let mut p = params.to_vec();
    let mut nonzero = 0;
    for (name, i) in probe(model) {
        p[i] = params[i] + h;
        let up = model.loss_f64(&p, batch);
        p[i] = params[i] - h;
        let down = model.loss_f64(&p, batch);
        p[i] = params[i];
        let numeric = (up - down) / (2.0 * h);
        let err = (numeric - grad[i]).abs();
        assert!(
            err <= 1e-7 + 1e-5 * numeric.abs(),
            "{name}: analytic {} vs numeric {numeric}",
            grad[i]
        );
        if numeric.abs() > 1e-6 {
            nonzero += 1;
        }
    }
    // The check means something only if most probed gradients are not zero.
    assert!(nonzero * 3 >= probe(model).len() * 2, "{nonzero} non-zero");
}

#[test]
fn cnn_gradient_matches_finite_differences() {
    let model = tiny_cnn();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..4 * 256).map(|_| rng.random::<f32>()).collect();
    let labels = [0u32, 2, 1, 2];
    let batch = Batch::Images {
        pixels: &pixels,
        labels: &labels,
    };
    // Larger than the default init so that the ReLUs and pools are not all in one regime.
    let params: Vec<f64> = model
        .init(3)
        .iter()
        .map(|&v| f64::from(v) * 2.0 + 0.01)
        .collect();
    check_gradient(&model, &params, &batch);
    // The f32 path is the same network.
    let p32: Vec<f32> = params.iter().map(|&v| v as f32).collect();
    let (mut g32, mut g64) = (vec![0f32; model.dim()], vec![0f64; model.dim()]);
    let l32 = model.loss_grad(&p32, &batch, &mut g32);
    let l64 = model.loss_grad_f64(&params, &batch, &mut g64);
    assert!((f64::from(l32) - l64).abs() < 1e-5 * l64);
    let scale = g64.iter().fold(0f64, |m, g| m.max(g.abs()));
    for (a, b) in g32.iter().zip(&g64) {
        assert!((f64::from(*a) - b).abs() < 1e-4 * scale, "{a} vs {b}");
    }
}

#[test]
fn transformer_gradient_matches_finite_differences() {
    let model = tiny_transformer();
    let tokens: Vec<u8> = [0u8, 3, 1, 6, 2, 2, 5, 4, 0, 1, 6, 3].to_vec();
    let batch = Batch::Windows { tokens: &tokens };
    // GPT-2's 0.02 init makes attention almost uniform; a larger scale exercises it.
    let params: Vec<f64> = model
        .init(5)
        .iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) * 20.0 + 0.05 * ((i % 7) as f64 - 3.0) / 3.0)
        .collect();
    check_gradient(&model, &params, &batch);
}

#[test]
fn layout_is_name_sorted_and_contiguous() {
    for model in [tiny_cnn(), tiny_transformer()] {
        let entries = model.layout().entries();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let mut offset = 0;
        for e in entries {
            assert_eq!(e.offset, offset, "{}", e.name);
            assert_eq!(e.len, e.shape.iter().product::<usize>(), "{}", e.name);
            assert_eq!(model.layout().get(&e.name), Some(e));
            offset += e.len;
        }
        assert_eq!(offset, model.dim());
    }
    // The CNN's names and native shapes, as the docs promise.
    let cnn = tiny_cnn();
    let shapes: Vec<(&str, &[usize])> = cnn
        .layout()
        .entries()
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("conv1.bias", &[2][..]),
            ("conv1.weight", &[2, 1, 5, 5][..]),
            ("conv2.bias", &[3][..]),
            ("conv2.weight", &[3, 2, 5, 5][..]),
            ("fc1.bias", &[4][..]),
            ("fc1.weight", &[4, 3][..]),
            ("fc2.bias", &[3][..]),
            ("fc2.weight", &[3, 4][..]),
        ]
    );
}

#[test]
fn parameter_counts_of_the_defaults() {
    let mnist = DeepSpec::default()
        .build(DataShape::Images {
            features: 784,
            classes: Some(10),
        })
        .unwrap();
    assert_eq!(mnist.dim(), 73_594);
    let big = "cnn:32,64,512"
        .parse::<DeepSpec>()
        .unwrap()
        .build(DataShape::Images {
            features: 784,
            classes: Some(10),
        })
        .unwrap();
    assert_eq!(big.dim(), 582_026);
    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    assert_eq!(text.vocab_size(), 80);
    let tf = "transformer"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    // 80·128 + 64·128 (embeddings) + 2·(12·128² + 13·128) (blocks) + 2·128 (final norm).
    assert_eq!(tf.dim(), 415_232);
}

#[test]
fn flat_vector_round_trips_through_candle_bit_exactly() {
    for model in [tiny_cnn(), tiny_transformer()] {
        // Values with every bit pattern class: tiny, huge, negative zero, subnormal.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut params: Vec<f32> = (0..model.dim())
            .map(|_| {
                f32::from_bits(
                    rng.random::<u32>() & 0x7f7f_ffff | (rng.random::<u32>() & 0x8000_0000),
                )
            })
            .collect();
        params[0] = -0.0;
        params[1] = f32::MIN_POSITIVE / 4.0;
        let tensors = model.to_tensors(&params).unwrap();
        for (t, e) in tensors.iter().zip(model.layout().entries()) {
            assert_eq!(t.dims(), e.shape.as_slice());
        }
        let mut back = vec![1.0f32; model.dim()];
        model.flatten_tensors(&tensors, &mut back);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&params), bits(&back));
    }
}

#[test]
fn spec_strings_parse_display_and_refuse() {
    for text in [
        "cnn:8,32,128",
        "cnn:6,16,120",
        "transformer:layers=2,width=128,heads=4,context=64",
        "transformer:layers=1,width=8,heads=2,context=5",
    ] {
        let spec: DeepSpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
    }
    assert_eq!(
        "cnn".parse::<DeepSpec>().unwrap().to_string(),
        "cnn:8,32,128"
    );
    assert_eq!(
        " transformer : heads=8 , layers=3 "
            .parse::<DeepSpec>()
            .unwrap()
            .to_string(),
        "transformer:layers=3,width=128,heads=8,context=64"
    );
    for bad in [
        "cnn:8,32",
        "cnn:8,x,128",
        "transformer:depth=2",
        "transformer:layers",
        "transformer:layers=2,layers=3",
        "resnet",
    ] {
        assert!(bad.parse::<DeepSpec>().is_err(), "{bad}");
    }
}

/// `build` refuses `spec` on `shape` and names `setting` in the message.
fn refused(spec: &str, shape: DataShape, setting: &str) {
    let err = spec.parse::<DeepSpec>().unwrap().build(shape).unwrap_err();
    assert_eq!(err.setting, setting, "{err}");
    assert!(err.to_string().contains(setting), "{err}");
}

#[test]
fn wrong_shapes_are_refused_naming_the_setting() {
    let images = |features| DataShape::Images {
        features,
        classes: Some(10),
    };
    let text = DataShape::Text {
        vocab: 65,
        len: 1000,
    };
    // Tabular data (30 features) is not a square image; 8×8 digits are too small.
    refused("cnn", images(30), "features");
    refused("cnn", images(64), "features");
    refused("cnn", images(12 * 12), "features");
    refused(
        "cnn",
        DataShape::Images {
            features: 784,
            classes: None,
        },
        "classes",
    );
    refused("cnn:0,16,128", images(784), "c1");
    refused("cnn:8,0,128", images(784), "c2");
    refused("cnn:8,16,0", images(784), "fc");
    refused("cnn", text, "data");
    refused("transformer:heads=0", text, "heads");
    refused("transformer:width=100,heads=3", text, "width");
    refused("transformer:layers=0", text, "layers");
    refused("transformer:context=0", text, "context");
    refused("transformer:width=0", text, "width");
    refused(
        "transformer:context=64",
        DataShape::Text { vocab: 65, len: 64 },
        "context",
    );
    refused("transformer", images(784), "data");
    // The smallest accepted image and an odd side (pools drop a row and a column).
    for side in [16, 17, 28, 31] {
        let model = "cnn:2,3,4"
            .parse::<DeepSpec>()
            .unwrap()
            .build(images(side * side))
            .unwrap();
        let pixels = vec![0.5f32; side * side];
        let mut grad = vec![0.0; model.dim()];
        let loss = model.loss_grad(
            &model.init(0),
            &Batch::Images {
                pixels: &pixels,
                labels: &[3],
            },
            &mut grad,
        );
        assert!(loss.is_finite(), "side {side}");
    }
    // The bundled data builds what it should and refuses what it should not.
    let digits = data::digits();
    assert_eq!(
        DeepSpec::default()
            .build_for_images(&digits)
            .unwrap_err()
            .setting,
        "features"
    );
    let table = Dataset::new(
        Array2::zeros((4, 30)),
        Array1::from(vec![0.0, 1.0, 0.0, 1.0]),
        Some(2),
    )
    .unwrap();
    assert_eq!(
        DeepSpec::default()
            .build_for_images(&table)
            .unwrap_err()
            .setting,
        "features"
    );
    let short = TextCorpus::from_bytes(b"to be or not").unwrap();
    assert_eq!(
        "transformer"
            .parse::<DeepSpec>()
            .unwrap()
            .build_for_text(&short)
            .unwrap_err()
            .setting,
        "context"
    );
}

#[test]
fn initialisation_is_seeded_and_follows_each_scheme() {
    let cnn = tiny_cnn();
    assert_eq!(cnn.init(7), cnn.init(7));
    assert_ne!(cnn.init(7), cnn.init(8));
    let p = cnn.init(7);
    for e in cnn.layout().entries() {
        // uniform(±1/√fan_in): conv1 fan-in 25, conv2 2·25, fc1 3, fc2 4.
        let fan_in = match &e.name[..3] {
            "con" if e.name.starts_with("conv1") => 25.0,
            "con" => 50.0,
            _ if e.name.starts_with("fc1") => 3.0,
            _ => 4.0,
        };
        let bound = 1.0 / f32::sqrt(fan_in);
        let v = &p[e.range()];
        assert!(v.iter().all(|x| x.abs() <= bound), "{}", e.name);
        assert!(v.iter().any(|x| *x != 0.0), "{}", e.name);
    }
    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    let tf = "transformer:layers=2,width=64,heads=4,context=32"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    let p = tf.init(1);
    let std = |name: &str| {
        let v = tf.layout().slice(&p, name);
        (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    assert!((std("tok_emb.weight") - 0.02).abs() < 0.002);
    assert!((std("blocks.0.mlp.fc.weight") - 0.02).abs() < 0.001);
    assert!((std("blocks.1.attn.proj.weight") - 0.01).abs() < 0.001);
    assert!(
        tf.layout()
            .slice(&p, "blocks.1.ln2.weight")
            .iter()
            .all(|&v| v == 1.0)
    );
    assert!(tf.layout().slice(&p, "ln_f.bias").iter().all(|&v| v == 0.0));
    assert!(
        tf.layout()
            .slice(&p, "blocks.0.attn.qkv.bias")
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// Steps of plain gradient descent on one batch, inside a rayon pool of `threads` threads.
fn descend(model: &DeepModel, batch: &Batch<'_>, threads: usize) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut p = model.init(11);
        let mut g = vec![0.0; model.dim()];
        for _ in 0..3 {
            model.loss_grad(&p, batch, &mut g);
            for (p, g) in p.iter_mut().zip(&g) {
                *p -= 0.1 * g;
            }
        }
        p
    })
}

#[test]
fn steps_are_bit_identical_across_thread_counts() {
    let mnist = data::mnist();
    let model = DeepSpec::default().build_for_images(&mnist).unwrap();
    let pixels: Vec<f32> = mnist
        .features
        .slice(ndarray::s![..32, ..])
        .iter()
        .copied()
        .collect();
    let labels: Vec<u32> = (0..32).map(|i| mnist.label(i) as u32).collect();
    let batch = Batch::Images {
        pixels: &pixels,
        labels: &labels,
    };
    let one = descend(&model, &batch, 1);
    assert_eq!(one, descend(&model, &batch, 2));
    assert_ne!(one, model.init(11));

    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    let model = "transformer:layers=1,width=32,heads=2,context=32"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    let tokens = &text.tokens()[..8 * 33];
    let batch = Batch::Windows { tokens };
    assert_eq!(descend(&model, &batch, 1), descend(&model, &batch, 2));
}
