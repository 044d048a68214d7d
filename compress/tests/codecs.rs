//! Round trips, error feedback, the entropy bound and hostile bytes, for every codec.

use murmur_compress::{
    CodecSpec, Compressed, DecodeError, DecodeLimits, ErrorFeedback, build,
    entropy_bound_bits_per_entry,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn all_specs() -> Vec<CodecSpec> {
    vec![
        CodecSpec::DenseF32,
        CodecSpec::DenseF16,
        CodecSpec::ThresholdSign { tau: 0.5 },
        CodecSpec::AdaptiveThreshold { density: 0.05 },
        CodecSpec::ScaledThreshold { density: 0.05 },
        CodecSpec::TopK { density: 0.05 },
        CodecSpec::RandK {
            density: 0.05,
            unbiased: true,
        },
        CodecSpec::RandK {
            density: 0.05,
            unbiased: false,
        },
        CodecSpec::ScaledSign,
        CodecSpec::Qsgd { levels: 4 },
    ]
}

fn random_vec(d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_codec_round_trips(d in 0usize..700, seed in any::<u64>(), alpha in -2.0f32..2.0) {
        let v = random_vec(d, seed);
        for spec in all_specs() {
            let c = build(&spec, seed).compress(&v);
            let bytes = c.encode();
            prop_assert_eq!(bytes.len(), c.encoded_len());
            prop_assert_eq!(Compressed::decode(&bytes, &DecodeLimits::for_dim(d)), Ok(c.clone()));
            prop_assert!(c.is_finite());
            let dense = c.to_dense();
            let base = random_vec(d, seed ^ 1);
            let mut out = base.clone();
            c.add_to(&mut out, alpha);
            for i in 0..d {
                prop_assert_eq!(out[i], base[i] + alpha * dense[i]);
            }
        }
    }
}

/// Awkward values for the SIMD selection: NaN, ±inf, ±0, subnormals, exactly ±tau, its
/// neighbours, and plain values; lengths that are not multiples of 64.
fn awkward_vec(d: usize, seed: u64, tau: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::from_bits(1),
        -f32::from_bits(1),
        tau,
        -tau,
        f32::from_bits(tau.to_bits() - 1),
        -f32::from_bits(tau.to_bits() + 1),
        f32::MAX,
        f32::MIN,
    ];
    (0..d)
        .map(|_| {
            if rng.random_bool(0.3) {
                specials[rng.random_range(0..specials.len())]
            } else {
                rng.random_range(-2.0f32..2.0)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The fused SIMD gather picks exactly what a scalar loop picks: |x| >= tau, NaN never,
    /// ±inf always, with the sign of x; the scaled variant's mean is the f64 sum in index order.
    #[test]
    fn threshold_selection_matches_scalar_reference(d in 0usize..700, seed in any::<u64>()) {
        let tau = 0.75f32;
        let v = awkward_vec(d, seed, tau);
        let c = build(&CodecSpec::ThresholdSign { tau }, 0).compress(&v);
        let picked: Vec<usize> = (0..d).filter(|&i| v[i].abs() >= tau).collect();
        prop_assert_eq!(c.nnz(), picked.len());
        let dense = c.to_dense();
        for i in 0..d {
            let want = if v[i].abs() >= tau {
                if v[i].is_sign_negative() { -tau } else { tau }
            } else {
                0.0
            };
            prop_assert_eq!(dense[i].to_bits(), want.to_bits(), "entry {} of {}: {}", i, d, v[i]);
        }
        // Scaled variant over finite inputs (its mean of an infinite entry is infinite).
        let finite: Vec<f32> = v.iter().map(|&x| if x.is_finite() { x } else { 0.5 }).collect();
        let c = build(&CodecSpec::ScaledThreshold { density: 0.1 }, seed).compress(&finite);
        if c.nnz() > 0 {
            let tau = build(&CodecSpec::AdaptiveThreshold { density: 0.1 }, seed)
                .compress(&finite)
                .scale();
            let chosen: Vec<f32> = finite.iter().copied().filter(|x| x.abs() >= tau).collect();
            prop_assert_eq!(c.nnz(), chosen.len());
            let mean = chosen.iter().map(|&x| f64::from(x.abs())).sum::<f64>() / chosen.len() as f64;
            prop_assert_eq!(c.scale(), mean as f32);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// On larger inputs (the encoder's table of codes, joined codes, unconditional slots and
    /// its sparse/dense switch all engage) the fixed-threshold frame round-trips through the
    /// strict decoder and decodes to exactly the entries and signs a scalar loop picks, whatever
    /// mix of dense stretches, empty stretches (unary runs ≥ 32) and specials.
    #[test]
    fn threshold_encoder_matches_scalar_reference_on_large_inputs(
        d in 0usize..40_000,
        seed in any::<u64>(),
        density in 0.0005f32..0.6,
        empty_every in 1usize..20_000,
    ) {
        let tau = 1.0 - density;
        let mut v = awkward_vec(d, seed, tau);
        // Empty stretches: a third of every period is zero.
        for (i, x) in v.iter_mut().enumerate() {
            if i % empty_every < empty_every / 3 {
                *x = 0.0;
            }
        }
        let c = build(&CodecSpec::ThresholdSign { tau }, 0).compress(&v);
        let picked: Vec<usize> = (0..d).filter(|&i| v[i].abs() >= tau).collect();
        prop_assert_eq!(c.nnz(), picked.len());
        let bytes = c.encode();
        let back = Compressed::decode(&bytes, &DecodeLimits::for_dim(d)).unwrap();
        prop_assert_eq!(&back, &c);
        let dense = back.to_dense();
        for i in 0..d {
            let want = if v[i].abs() >= tau {
                if v[i].is_sign_negative() { -tau } else { tau }
            } else {
                0.0
            };
            prop_assert_eq!(dense[i].to_bits(), want.to_bits(), "entry {} of {}", i, d);
        }
    }
}

/// The large-input path of the adaptive threshold (sampled bracket, SIMD gather above it,
/// exact selection) returns exactly the k-th largest magnitude key, NaN counted as 0, on
/// inputs with NaN, infinities, zeros and many ties.
#[test]
fn adaptive_threshold_is_exact_on_large_awkward_inputs() {
    for (d, density, seed) in [
        (200_000usize, 0.01f32, 1u64),
        (300_001, 0.001, 2),
        (250_000, 0.1, 3),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Uniform(-1, 1) with 2% NaN, a few infinities, 5% zeros, and every 97th entry tied
        // at ±(1 − density), right at the expected threshold.
        let tie = 1.0 - density;
        let v: Vec<f32> = (0..d)
            .map(|i| match rng.random_range(0..10_000) {
                _ if i % 97 == 0 => {
                    if i % 2 == 0 {
                        tie
                    } else {
                        -tie
                    }
                }
                0..200 => f32::NAN,
                200..202 => f32::NEG_INFINITY,
                202..700 => 0.0,
                _ => rng.random_range(-1.0f32..1.0),
            })
            .collect();
        let k = ((f64::from(density) * d as f64).ceil() as usize).min(d);
        let mut keys: Vec<u32> = v
            .iter()
            .map(|x| {
                let a = x.to_bits() & 0x7fff_ffff;
                if a > 0x7f80_0000 { 0 } else { a }
            })
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let want = f32::from_bits(keys[k - 1]);
        assert!(want.is_finite() && want > 0.0);
        for seed in 0..3 {
            let c = build(&CodecSpec::AdaptiveThreshold { density }, seed).compress(&v);
            assert_eq!(
                c.scale().to_bits(),
                want.to_bits(),
                "d={d} density={density}"
            );
            let sent = v.iter().filter(|x| x.abs() >= want).count();
            assert_eq!(c.nnz(), sent);
            assert!(sent >= k);
            // The same message as the fixed threshold at that tau: same entries and signs.
            let reference = build(&CodecSpec::ThresholdSign { tau: want }, 0).compress(&v);
            assert_eq!(c, reference);
            // Scaled: the same entries and signs, ± their mean magnitude (f64, index order).
            let s = build(&CodecSpec::ScaledThreshold { density }, seed).compress(&v);
            let mean = v
                .iter()
                .filter(|x| x.abs() >= want)
                .map(|x| f64::from(x.abs()))
                .sum::<f64>()
                / sent as f64;
            assert_eq!(s.scale(), mean as f32);
            for (a, b) in s.to_dense().iter().zip(reference.to_dense()) {
                assert_eq!(*a == 0.0, b == 0.0);
                assert_eq!(a.is_sign_negative(), b.is_sign_negative());
            }
        }
    }
}

#[test]
fn threshold_codecs_send_what_they_promise() {
    let v = random_vec(10_000, 3);
    // Fixed tau: exactly the entries with |v| >= tau, as ±tau.
    let c = build(&CodecSpec::ThresholdSign { tau: 0.9 }, 0).compress(&v);
    let dense = c.to_dense();
    for (x, q) in v.iter().zip(&dense) {
        let want = if *x >= 0.9 {
            0.9
        } else if *x <= -0.9 {
            -0.9
        } else {
            0.0
        };
        assert_eq!(*q, want);
    }
    // Adaptive: k = 1% of d entries, ±(k-th largest magnitude).
    let c = build(&CodecSpec::AdaptiveThreshold { density: 0.01 }, 0).compress(&v);
    assert_eq!(c.nnz(), 100);
    let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(c.scale(), mags[99]);
    // Scaled: mean magnitude of the same entries.
    let c = build(&CodecSpec::ScaledThreshold { density: 0.01 }, 0).compress(&v);
    let mean = mags[..100].iter().map(|&x| f64::from(x)).sum::<f64>() / 100.0;
    assert!((f64::from(c.scale()) - mean).abs() < 1e-6);
    // Top-k: exact values of the 100 largest.
    let c = build(&CodecSpec::TopK { density: 0.01 }, 0).compress(&v);
    let dense = c.to_dense();
    assert_eq!(c.nnz(), 100);
    for (x, q) in v.iter().zip(&dense) {
        assert!(*q == 0.0 || (*q == *x && x.abs() >= mags[99]));
    }
    // Rand-k unbiased scales by d/k; biased does not; the seed fixes the choice.
    let u = build(
        &CodecSpec::RandK {
            density: 0.01,
            unbiased: true,
        },
        5,
    )
    .compress(&v);
    let b = build(
        &CodecSpec::RandK {
            density: 0.01,
            unbiased: false,
        },
        5,
    )
    .compress(&v);
    let (ud, bd) = (u.to_dense(), b.to_dense());
    for i in 0..v.len() {
        assert_eq!(ud[i], bd[i] * 100.0);
        assert!(bd[i] == 0.0 || bd[i] == v[i]);
    }
    assert_eq!(
        b,
        build(
            &CodecSpec::RandK {
                density: 0.01,
                unbiased: false
            },
            5
        )
        .compress(&v)
    );
    // Sign: ±mean|v| everywhere.
    let c = build(&CodecSpec::ScaledSign, 0).compress(&v);
    let mean = v.iter().map(|x| f64::from(x.abs())).sum::<f64>() / v.len() as f64;
    assert!((f64::from(c.scale()) - mean).abs() < 1e-6);
    for (x, q) in v.iter().zip(c.to_dense()) {
        assert_eq!(q.abs(), c.scale());
        assert_eq!(q < 0.0, *x < 0.0);
    }
}

#[test]
fn qsgd_is_unbiased_and_bounded() {
    let v = random_vec(200, 9);
    let mut q = build(&CodecSpec::Qsgd { levels: 8 }, 1);
    let mut mean = vec![0f64; v.len()];
    let n = 4000;
    for _ in 0..n {
        let c = q.compress(&v);
        for (m, x) in mean.iter_mut().zip(c.to_dense()) {
            *m += f64::from(x) / f64::from(n);
        }
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    for (m, x) in mean.iter().zip(&v) {
        // Std of one draw ≤ norm/s; of the mean ≤ norm/(s·sqrt(n)); 5 sigma.
        assert!((m - f64::from(*x)).abs() < 5.0 * norm / 8.0 / f64::from(n).sqrt());
    }
}

/// (Σ decoded) + residual == Σ inputs within float rounding, after thousands of steps.
#[test]
fn error_feedback_loses_nothing() {
    let d = 300;
    // Unbiased rand-k and QSGD are excluded: they are unbiased but not contractions
    // (E‖r − Q(r)‖² can exceed ‖r‖², e.g. ω = d/k − 1 for rand-k), so an error-feedback
    // residual grows without bound; error feedback wants a contractive (biased) compressor.
    let specs = all_specs().into_iter().filter(|s| {
        !matches!(
            s,
            CodecSpec::RandK { unbiased: true, .. } | CodecSpec::Qsgd { .. }
        )
    });
    for spec in specs {
        let mut ef = ErrorFeedback::new(d, build(&spec, 11));
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut sent = vec![0f64; d];
        let mut inputs = vec![0f64; d];
        let steps = 3000;
        for _ in 0..steps {
            let g: Vec<f32> = (0..d).map(|_| rng.random_range(-0.01f32..0.01)).collect();
            for (s, x) in inputs.iter_mut().zip(&g) {
                *s += f64::from(*x);
            }
            let c = ef.push(&g);
            for (s, x) in sent.iter_mut().zip(c.to_dense()) {
                *s += f64::from(x);
            }
        }
        let scale = inputs.iter().map(|x| x.abs()).fold(1.0, f64::max);
        for i in 0..d {
            let err = (sent[i] + f64::from(ef.residual()[i]) - inputs[i]).abs();
            // Each step rounds the residual twice (add, subtract) at most by ulp(|r|).
            let tol = steps as f64 * 4.0 * f32::EPSILON as f64 * scale.max(1.0);
            assert!(err < tol, "{spec}: coordinate {i} drifted by {err}");
        }
    }
}

#[test]
fn the_entropy_bound_is_known_at_its_landmarks() {
    // Half the entries: H_b = 1 bit per coordinate, 2 per sent entry, plus its sign.
    assert_eq!(entropy_bound_bits_per_entry(50, 100), Some(3.0));
    // Every entry: positions cost nothing, signs one bit.
    assert_eq!(entropy_bound_bits_per_entry(7, 7), Some(1.0));
    // 1 of 1024: log2(1024) + (1023/1)·log2(1024/1023) ≈ 10 + 1.44 position bits.
    let b = entropy_bound_bits_per_entry(1, 1024).unwrap();
    assert!((b - (10.0 + 1023.0 * (1024.0f64 / 1023.0).log2() + 1.0)).abs() < 1e-9);
    assert_eq!(entropy_bound_bits_per_entry(0, 10), None);
    assert_eq!(entropy_bound_bits_per_entry(11, 10), None);
}

/// Bits per sent entry within 5% of H_b(p)/p + 1 at densities 0.1%, 1% and 10%.
#[test]
fn index_coding_is_within_five_percent_of_the_entropy_bound() {
    let d = 2_000_000;
    for density in [0.001f32, 0.01, 0.1] {
        let v = random_vec(d, 77);
        let c = build(&CodecSpec::AdaptiveThreshold { density }, 0).compress(&v);
        let bits = c.encoded_len() as f64 * 8.0 / c.nnz() as f64;
        let bound = entropy_bound_bits_per_entry(c.nnz(), d).unwrap();
        println!(
            "density {density}: {bits:.3} bits/entry, bound {bound:.3}, ratio {:.4}",
            bits / bound
        );
        assert!(
            bits <= bound * 1.05,
            "density {density}: {bits} > 1.05 × {bound}"
        );
        assert!(bits >= bound * 0.99, "cannot beat the entropy bound");
    }
}

fn frames() -> Vec<(CodecSpec, usize, Vec<u8>)> {
    let mut out = Vec::new();
    for d in [1usize, 9, 100] {
        let v = random_vec(d, d as u64);
        for spec in all_specs() {
            let c = build(&spec, 3).compress(&v);
            out.push((spec, d, c.encode()));
        }
    }
    out
}

/// Every truncation and every single-byte corruption is rejected or decodes to a valid message.
#[test]
fn truncated_and_corrupted_frames_never_panic() {
    for (spec, d, bytes) in frames() {
        let limits = DecodeLimits::for_dim(d);
        for cut in 0..bytes.len() {
            assert!(
                Compressed::decode(&bytes[..cut], &limits).is_err(),
                "{spec}: truncation at {cut} accepted"
            );
        }
        for pos in 0..bytes.len() {
            for val in 0..=255u8 {
                let mut b = bytes.clone();
                b[pos] = val;
                if let Ok(c) = Compressed::decode(&b, &limits) {
                    assert_eq!(c.dim(), d);
                    assert!(c.is_finite());
                    assert_eq!(Compressed::decode(&c.encode(), &limits), Ok(c.clone()));
                    let mut out = vec![0.0; d];
                    c.add_to(&mut out, 1.0);
                    assert!(out.iter().all(|x| x.is_finite()));
                }
            }
        }
    }
}

/// A frame whose gaps run past its dimension is rejected with `IndexOutOfRange` naming the
/// first entry out of range, whichever decoding path reads it (the many-codes-per-load path of
/// large frames, the one-code path of small ones), for sparse signs and sparse values.
#[test]
fn gaps_past_the_dimension_name_the_first_entry_out_of_range() {
    fn leb128(mut x: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }
    let d = 100_000usize;
    let v = random_vec(d, 9);
    for (spec, shrunk) in [
        (CodecSpec::AdaptiveThreshold { density: 0.2 }, 60_000usize),
        (CodecSpec::AdaptiveThreshold { density: 0.001 }, 50_000),
        (CodecSpec::TopK { density: 0.05 }, 70_000),
    ] {
        let c = build(&spec, 0).compress(&v);
        let dense = c.to_dense();
        let positions: Vec<usize> = (0..d).filter(|&i| dense[i] != 0.0).collect();
        let first_out = positions.iter().position(|&i| i >= shrunk).unwrap();
        // Same frame, dimension field rewritten (both varints take 3 bytes).
        let mut bytes = c.encode();
        assert_eq!(&bytes[2..5], &leb128(d as u64)[..]);
        bytes[2..5].copy_from_slice(&leb128(shrunk as u64));
        assert_eq!(
            Compressed::decode(&bytes, &DecodeLimits::for_dim(shrunk)),
            Err(DecodeError::IndexOutOfRange {
                entry: first_out as u64,
                dim: shrunk as u64
            }),
            "{spec}: {} entries",
            positions.len()
        );
    }
}

#[test]
fn decode_names_what_is_wrong() {
    let v = random_vec(100, 1);
    let c = build(&CodecSpec::AdaptiveThreshold { density: 0.1 }, 0).compress(&v);
    let bytes = c.encode();
    let limits = DecodeLimits::for_dim(100);
    assert!(matches!(
        Compressed::decode(&bytes, &DecodeLimits::for_dim(99)),
        Err(DecodeError::DimensionMismatch {
            expected: 99,
            got: 100
        })
    ));
    assert!(matches!(
        Compressed::decode(
            &bytes,
            &DecodeLimits {
                expected_dim: 100,
                max_bytes: 4
            }
        ),
        Err(DecodeError::TooLarge { .. })
    ));
    assert_eq!(Compressed::decode(&[], &limits), Err(DecodeError::Empty));
    let mut b = bytes.clone();
    b[0] = 9;
    assert!(matches!(
        Compressed::decode(&b, &limits),
        Err(DecodeError::UnsupportedVersion { got: 9, .. })
    ));
    let mut b = bytes.clone();
    b[1] = 77;
    assert_eq!(
        Compressed::decode(&b, &limits),
        Err(DecodeError::UnknownCodec(77))
    );
    let mut b = bytes.clone();
    b.push(0);
    assert_eq!(
        Compressed::decode(&b, &limits),
        Err(DecodeError::TrailingBytes(1))
    );
    // A NaN in a dense frame.
    let mut x = v.clone();
    x[3] = f32::NAN;
    let dense = build(&CodecSpec::DenseF32, 0).compress(&x);
    assert!(!dense.is_finite());
    assert_eq!(
        Compressed::decode(&dense.encode(), &limits),
        Err(DecodeError::NonFiniteValue(3))
    );
    // A generous byte cap does not matter: lengths are checked against the frame itself.
    let small = build(&CodecSpec::DenseF32, 0).compress(&[1.0; 4]).encode();
    let generous = DecodeLimits {
        expected_dim: 4,
        max_bytes: 1 << 40,
    };
    assert!(Compressed::decode(&small, &generous).is_ok());
    let mut inflated = small.clone();
    inflated[2] = 0xff; // dim varint continues into count: envelope no longer consistent
    assert!(Compressed::decode(&inflated, &generous).is_err());
}

#[test]
fn spec_text_round_trips() {
    for s in [
        "dense",
        "f16",
        "threshold-tau:0.001",
        "threshold:0.01",
        "scaled-threshold:0.01",
        "topk:0.01",
        "randk:0.01",
        "randk-biased:0.01",
        "sign",
        "qsgd:16",
    ] {
        let spec: CodecSpec = s.parse().unwrap();
        assert_eq!(spec.to_string(), s);
        assert_eq!(spec.to_string().parse::<CodecSpec>().unwrap(), spec);
    }
    for s in all_specs() {
        assert_eq!(s.to_string().parse::<CodecSpec>().unwrap(), s);
    }
    assert!("threshold:0".parse::<CodecSpec>().is_err());
    assert!("threshold:1.5".parse::<CodecSpec>().is_err());
    assert!("qsgd:0".parse::<CodecSpec>().is_err());
    assert!("zip".parse::<CodecSpec>().is_err());
    assert!("dense:3".parse::<CodecSpec>().is_err());
    assert!("topk".parse::<CodecSpec>().is_err());
}

/// Large sparse frames take the table-driven gap decoder: same results, same strictness.
#[test]
fn large_sparse_frames_round_trip_and_survive_corruption() {
    let d = 60_000;
    let v = random_vec(d, 5);
    let limits = DecodeLimits::for_dim(d);
    for spec in [
        CodecSpec::AdaptiveThreshold { density: 0.1 },
        CodecSpec::AdaptiveThreshold { density: 0.04 },
        CodecSpec::TopK { density: 0.05 },
    ] {
        let c = build(&spec, 0).compress(&v);
        assert!(c.nnz() >= 2048);
        let bytes = c.encode();
        let back = Compressed::decode(&bytes, &limits).unwrap();
        assert_eq!(back, c);
        // Decoded positions are exactly the chosen entries.
        let tau = c.scale();
        for (x, q) in v.iter().zip(back.to_dense()) {
            match spec {
                CodecSpec::TopK { .. } => assert!(q == 0.0 || q == *x),
                _ => assert_eq!(q != 0.0, x.abs() >= tau, "{spec}"),
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for cut in (0..bytes.len()).step_by(7) {
            assert!(Compressed::decode(&bytes[..cut], &limits).is_err());
        }
        for _ in 0..3000 {
            let mut b = bytes.clone();
            let pos = rng.random_range(0..b.len());
            b[pos] = rng.random();
            if let Ok(m) = Compressed::decode(&b, &limits) {
                assert!(m.is_finite() && m.dim() == d);
                m.to_dense();
            }
        }
    }
}
