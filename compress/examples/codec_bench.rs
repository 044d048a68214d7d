//! Codec throughput against memcpy, bits per entry against the entropy bound.
//!
//! `cargo run --release -p murmur-compress --example codec_bench`
//!
//! For d = 1M and 10M and densities 0.1%, 1%, 10%: threshold-sign encode (fixed tau, set to hit
//! the density) and adaptive-threshold encode, decode-and-apply (`Compressed::decode` +
//! `add_to`), all as GB/s of the dense f32 vector, next to a memcpy of the same buffer timed in
//! the same run; then every other codec at d = 1M. Ends with one `summary:` line (worst cases).

use std::hint::black_box;
use std::time::Instant;

use murmur_compress::{CodecSpec, Compressed, DecodeLimits, build, threshold_encoder_build};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Best-of-`reps` seconds for `f`.
fn best<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn entropy_bound(p: f64) -> f64 {
    -(p * p.log2() + (1.0 - p) * (1.0 - p).log2()) / p + 1.0
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let build_name = threshold_encoder_build();
    println!(
        "threshold encoder build: {build_name} (MURMUR_COMPRESS_BUILD=portable or =x86-64-v3 caps it)"
    );
    println!(
        "{:>9} {:>7} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "d",
        "density",
        "memcpy GB/s",
        "enc GB/s",
        "enc/mem",
        "adapt/m",
        "dec GB/s",
        "dec/mem",
        "bits/ent",
        "bound",
        "bits/bnd",
        "ratio"
    );
    let mut worst_enc = f64::INFINITY;
    let mut worst_adapt = f64::INFINITY;
    let mut worst_dec_1pct = f64::INFINITY;
    let mut worst_dec = f64::INFINITY;
    let mut worst_bits = 0f64;
    let mut worst_ratio_1pct = f64::INFINITY;
    for d in [1_000_000usize, 10_000_000] {
        let v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut dst = vec![0f32; d];
        let reps = if d > 5_000_000 { 5 } else { 40 };
        let gb = (d * 4) as f64 / 1e9;
        let t_mem = best(reps, || {
            dst.copy_from_slice(&v);
            dst[d / 2]
        });
        for density in [0.001f32, 0.01, 0.1] {
            // A fixed tau hitting the density: uniform(-1, 1) has P(|v| ≥ tau) = 1 − tau.
            let tau = 1.0 - density;
            let mut fixed = build(&CodecSpec::ThresholdSign { tau }, 0);
            let t_enc = best(reps, || fixed.compress(&v));
            let mut adaptive = build(&CodecSpec::AdaptiveThreshold { density }, 0);
            let t_adapt = best(reps, || adaptive.compress(&v));
            let c = fixed.compress(&v);
            let bytes = c.encode();
            let limits = DecodeLimits::for_dim(d);
            let t_dec = best(reps, || {
                let m = Compressed::decode(&bytes, &limits).expect("valid frame");
                m.add_to(&mut dst, 1.0);
            });
            let p = c.nnz() as f64 / d as f64;
            let bits = bytes.len() as f64 * 8.0 / c.nnz() as f64;
            let bound = entropy_bound(p);
            let ratio = (d * 4) as f64 / bytes.len() as f64;
            let (enc, adapt, dec) = (t_mem / t_enc, t_mem / t_adapt, t_mem / t_dec);
            println!(
                "{:>9} {:>6.1}% {:>12.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.3} {:>8.3} {:>8.4} {:>8.0}",
                d,
                density * 100.0,
                gb / t_mem,
                gb / t_enc,
                enc,
                adapt,
                gb / t_dec,
                dec,
                bits,
                bound,
                bits / bound,
                ratio
            );
            worst_enc = worst_enc.min(enc);
            worst_adapt = worst_adapt.min(adapt);
            worst_dec = worst_dec.min(dec);
            worst_bits = worst_bits.max(bits / bound);
            if density == 0.01 {
                worst_dec_1pct = worst_dec_1pct.min(dec);
                worst_ratio_1pct = worst_ratio_1pct.min(ratio);
            }
        }
    }

    println!();
    println!("other codecs at d = 1M (uniform(-1, 1) input):");
    println!(
        "{:>22} {:>9} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "codec", "enc GB/s", "enc/mem", "dec GB/s", "dec/mem", "bytes", "ratio"
    );
    let d = 1_000_000;
    let v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut dst = vec![0f32; d];
    let gb = (d * 4) as f64 / 1e9;
    let t_mem = best(15, || {
        dst.copy_from_slice(&v);
        dst[d / 2]
    });
    for spec in [
        "dense",
        "f16",
        "threshold:0.01",
        "scaled-threshold:0.01",
        "topk:0.01",
        "randk:0.01",
        "randk-biased:0.01",
        "sign",
        "qsgd:16",
    ] {
        let spec: CodecSpec = spec.parse().expect("valid spec");
        let mut q = build(&spec, 1);
        let t_enc = best(5, || q.compress(&v));
        let c = q.compress(&v);
        let bytes = c.encode();
        let limits = DecodeLimits::for_dim(d);
        let t_dec = best(5, || {
            let m = Compressed::decode(&bytes, &limits).expect("valid frame");
            m.add_to(&mut dst, 1.0);
        });
        println!(
            "{:>22} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>8.1}",
            spec.to_string(),
            gb / t_enc,
            t_mem / t_enc,
            gb / t_dec,
            t_mem / t_dec,
            bytes.len(),
            (d * 4) as f64 / bytes.len() as f64
        );
    }
    println!(
        "summary: encode_vs_memcpy={worst_enc:.2} adaptive_encode_vs_memcpy={worst_adapt:.2} decode_vs_memcpy={worst_dec_1pct:.2} decode_vs_memcpy_all={worst_dec:.2} bits_vs_entropy={worst_bits:.3} ratio_1pct={worst_ratio_1pct:.0} encoder={build_name}"
    );
}
