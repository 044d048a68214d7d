//! Shared checks for the decoder fuzz targets: decoding arbitrary bytes never panics, and an
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

/// Largest gossip frame the message target accepts: the peer's default cap at [`DIM`].
pub const MAX_MESSAGE_BYTES: usize = 8 * DIM + 4096;

/// `murmur_gossip::message::Message::decode` on arbitrary bytes: never panics, and an
/// accepted message re-encodes to a frame that decodes to the same encoding.
pub fn check_message(data: &[u8]) {
    use murmur_gossip::message::Message;
    if let Ok(m) = Message::decode(data, MAX_MESSAGE_BYTES) {
        let bytes = m.encode();
        let again = Message::decode(&bytes, usize::MAX).expect("re-encoded message decodes");
        assert_eq!(again.encode(), bytes);
        // The compressed frame an update carries is checked by the codec decoder too.
        if let Message::Update(u) = &m {
            check(&u.frame, None);
        }
    }
}

/// `PeerCheckpoint::decode` on arbitrary bytes: never panics, an accepted checkpoint
/// re-encodes to itself, and `Peer::restore` either takes it (leaving a finite model) or says
/// why not.
pub fn check_checkpoint(data: &[u8]) {
    use murmur_gossip::peer::PeerCheckpoint;
    if let Ok(cp) = PeerCheckpoint::decode(data) {
        let bytes = cp.encode();
        assert_eq!(PeerCheckpoint::decode(&bytes).map(|c| c.encode()), Ok(bytes));
        let mut peer = fresh_peer(cp.dim.min(DIM as u64 + 1) as usize, cp.fingerprint);
        if peer.restore(cp).is_ok() {
            assert!(peer.model().iter().all(|x| x.is_finite()));
            assert!(peer.public_copy().iter().all(|x| x.is_finite()));
        }
    }
}

fn fresh_peer(dim: usize, fingerprint: u64) -> murmur_gossip::peer::Peer<u32> {
    let dim = dim.max(1);
    let config = murmur_gossip::peer::PeerConfig {
        fingerprint,
        ..Default::default()
    };
    // No data and a little state (a step counter), so restore has something to validate.
    let learner = murmur_gossip::peer::testing::Quadratic {
        centre: vec![0.0; dim],
        lr: 0.0,
        steps: 0,
    };
    murmur_gossip::peer::Peer::new(0, config, Box::new(learner), ndarray::Array1::zeros(dim))
        .expect("valid config")
}

/// The encoders on arbitrary inputs: the first byte picks a threshold, the rest are f32
/// entries (any bits: NaN, infinities, subnormals). Never a panic; the fixed-threshold message
/// is exactly the scalar selection (|x| ≥ tau with its sign, NaN never); every codec's message
/// survives its own wire round trip against the strict decoder.
pub fn check_encoders(data: &[u8]) {
    use murmur_compress::{CodecSpec, build};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let v: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let d = v.len();
    let limits = DecodeLimits::for_dim(d);
    let tau = [0.0f32, 1e-30, 0.01, 0.5, 1.0, 3.0, 1e30, f32::INFINITY][usize::from(pick & 7)];
    let density = [0.001f32, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0, 0.05][usize::from(pick >> 5)];
    let c = build(&CodecSpec::ThresholdSign { tau }, 0).compress(&v);
    let t = if tau > 0.0 { tau } else { f32::from_bits(1) };
    let dense = c.to_dense();
    for (x, q) in v.iter().zip(&dense) {
        let want = if x.abs() >= t { t.copysign(*x) } else { 0.0 };
        assert_eq!(q.to_bits(), want.to_bits(), "x={x} tau={tau}");
    }
    for spec in [
        CodecSpec::ThresholdSign { tau },
        CodecSpec::AdaptiveThreshold { density },
        CodecSpec::ScaledThreshold { density },
        CodecSpec::TopK { density },
        CodecSpec::RandK {
            density,
            unbiased: true,
        },
        CodecSpec::ScaledSign,
        CodecSpec::Qsgd { levels: 4 },
        CodecSpec::DenseF16,
        CodecSpec::DenseF32,
    ] {
        let c = build(&spec, u64::from(pick)).compress(&v);
        assert_eq!(c.dim(), d);
        // Non-finite inputs can make a dense or scaled message non-finite; the decoder
        // rejects those by design, so only finite messages must round-trip.
        if c.is_finite() {
            assert_eq!(Compressed::decode(&c.encode(), &limits).as_ref(), Ok(&c), "{spec}");
        }
    }
}
