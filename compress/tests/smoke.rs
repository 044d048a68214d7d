use murmur_compress::{CodecSpec, Compressed, DecodeLimits, build};

fn all_specs() -> Vec<CodecSpec> {
    vec![
        CodecSpec::DenseF32,
        CodecSpec::DenseF16,
        CodecSpec::ThresholdSign { tau: 1.0 },
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

#[test]
fn smoke_round_trip() {
    for d in [0usize, 1, 7, 64, 65, 1000] {
        let v: Vec<f32> = (0..d)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 20.0)
            .collect();
        for spec in all_specs() {
            let mut q = build(&spec, 7);
            let c = q.compress(&v);
            let bytes = c.encode();
            assert_eq!(bytes.len(), c.encoded_len());
            let back = Compressed::decode(&bytes, &DecodeLimits::for_dim(d));
            assert_eq!(back.as_ref(), Ok(&c), "{spec} d={d}");
            let dense = c.to_dense();
            let mut out = vec![0.0; d];
            c.add_to(&mut out, 1.0);
            assert_eq!(dense, out);
            println!("{spec} d={d} nnz={} bytes={}", c.nnz(), bytes.len());
        }
    }
}
