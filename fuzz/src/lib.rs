//! Shared check for the decoder fuzz targets: decoding arbitrary bytes never panics, and an
//! accepted frame is a valid message (finite, right dimension, re-encodes to itself, applies).

use murmur_compress::{Compressed, DecodeLimits, FORMAT_VERSION, Format};

/// Dimension the targets decode against (small, so `max_bytes` is small too).
pub const DIM: usize = 257;

/// Runs the decoder on `data`; when `format` is given, the codec byte of a frame is forced to
/// that format's id so the fuzzer spends its time inside that decoder.
pub fn check(data: &[u8], format: Option<Format>) {
    let mut frame = data.to_vec();
    if let Some(f) = format {
        if frame.len() >= 2 {
            frame[0] = FORMAT_VERSION;
            frame[1] = f as u8;
        }
    }
    let limits = DecodeLimits::for_dim(DIM);
    if let Ok(c) = Compressed::decode(&frame, &limits) {
        assert_eq!(c.dim(), DIM);
        assert!(c.is_finite());
        assert_eq!(Compressed::decode(&c.encode(), &limits).as_ref(), Ok(&c));
        let mut out = vec![0.0f32; DIM];
        c.add_to(&mut out, 1.0);
        assert!(out.iter().all(|x| x.is_finite()));
    }
}
