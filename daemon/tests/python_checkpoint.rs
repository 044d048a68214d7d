//! A checkpoint is readable by a Python user who knows nothing of murmur: a node trains the
//! CNN on MNIST for a few rounds, and `python3` with `safetensors` + numpy loads its newest
//! checkpoint, finds every layer by name with its PyTorch-order shape, the model spec in the
//! header, and the same numbers the node saved. Skipped, with the reason printed, when
//! `python3`, `numpy` or `safetensors` is missing (`.ci/run` installs the two packages).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TempDir, args, start, wait_for};
use murmur_daemon::checkpoint;

/// Loads the file named by argv[1] and prints, per tensor: name, dtype, shape and the f64 sum
/// of its entries; then the header metadata. One JSON document.
const LOADER: &str = r#"
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, framework="np") as f:
    meta = f.metadata()
print(json.dumps({
    "tensors": {name: {"dtype": str(t.dtype), "shape": list(t.shape),
                       "sum": float(t.astype(np.float64).sum())}
                for name, t in tensors.items()},
    "metadata": meta,
}))
"#;

/// Why the Python side cannot run here, if it cannot.
fn python_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import numpy, safetensors.numpy"])
        .output()
    {
        Err(e) => Some(format!("python3 not runnable: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "python3 lacks numpy or safetensors (pip install numpy safetensors): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[test]
fn python_loads_each_cnn_layer_by_name_with_its_shape() {
    if let Some(why) = python_missing() {
        println!("SKIPPED: {why}");
        return;
    }
    let dir = TempDir::new("py-ckpt");
    let data = dir.join("n");
    let mut node = start(
        &data,
        &args(&[
            "--data",
            "mnist",
            "--model",
            "cnn:4,8,16",
            "--max-rounds",
            "3",
            "--checkpoint-every",
            "100",
        ]),
    );
    wait_for(&node, Duration::from_secs(120), "training done", |s| s.done);
    assert!(node.stop(Duration::from_secs(10)).unwrap(), "clean exit");
    let saved = checkpoint::newest(&data.join("checkpoints")).expect("a checkpoint");
    let flat = checkpoint::read_model(&saved.model_path).unwrap();
    assert_eq!(flat, saved.peer.model, "the file holds the resumable model");

    let out = Command::new("python3")
        .args(["-c", LOADER])
        .arg(&saved.model_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let meta = &doc["metadata"];
    assert_eq!(meta["model"], "cnn:4,8,16");
    assert_eq!(meta["round"], saved.meta.round.to_string());

    // cnn:C1,C2,FC on 28×28×1: 5×5 convolutions, 2×2 pooling twice (28→24→12→8→4).
    let expected: [(&str, Vec<u64>); 8] = [
        ("conv1.bias", vec![4]),
        ("conv1.weight", vec![4, 1, 5, 5]),
        ("conv2.bias", vec![8]),
        ("conv2.weight", vec![8, 4, 5, 5]),
        ("fc1.bias", vec![16]),
        ("fc1.weight", vec![16, 8 * 4 * 4]),
        ("fc2.bias", vec![10]),
        ("fc2.weight", vec![10, 16]),
    ];
    let tensors = doc["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), expected.len(), "{tensors:?}");
    let mut offset = 0;
    for (name, shape) in expected {
        let t = &tensors[name];
        assert_eq!(t["dtype"], "float32", "{name}");
        let got: Vec<u64> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, shape, "{name}");
        // The flat vector is the tensors in name order: this tensor's slice of it.
        let len: u64 = shape.iter().product();
        let slice = &flat[offset..offset + len as usize];
        offset += len as usize;
        let sum: f64 = slice.iter().map(|&v| f64::from(v)).sum();
        let py = t["sum"].as_f64().unwrap();
        assert!(
            (py - sum).abs() <= 1e-9 * (1.0 + sum.abs()) * len as f64,
            "{name}: python sums {py}, the node saved {sum}"
        );
    }
    assert_eq!(offset, flat.len());
}
