//! murmur-compress: the codecs for murmur's model updates and their strict wire format.
//!
//! It owns:
//! - the compressors Q over a flat `&[f32]` ([`Compressor`], [`build`], [`CodecSpec`]):
//!   Strom's 1-bit threshold quantizer (fixed tau, tau adapted to a target density, and a
//!   scaled variant sending the mean magnitude of the chosen entries), exact top-k, rand-k
//!   (unbiased and biased), scaled sign, QSGD with s levels, dense f16 and dense f32;
//! - index coding: sorted positions as gaps, Golomb-coded (the parameter, optimal for the
//!   message's density, travels in the header), signs bit-packed, which gets within a few
//!   percent of the entropy bound H_b(p)/p + 1 bits per sent entry;
//! - the wire envelope and its decoder ([`Compressed::encode`], [`Compressed::decode`]), which
//!   checks every field before returning and reports a typed [`DecodeError`];
//! - decode-and-apply straight from the bit stream ([`Compressed::add_to`]);
//! - stand-alone error feedback ([`ErrorFeedback`]).
//!
//! The caller owns residuals in the CHOCO-SGD use (it compresses x − x̂); compressors keep
//! only a seeded rng and scratch buffers.

#![warn(missing_docs)]

mod bits;
mod codecs;
mod feedback;
mod spec;
mod wire;

pub use codecs::{
    Compressor, build, entries_for_density, entropy_bound_bits_per_entry, threshold_encoder_build,
};
pub use feedback::ErrorFeedback;
pub use spec::{CodecSpec, ParseSpecError};
pub use wire::{Compressed, DecodeError, DecodeLimits, FORMAT_VERSION, Format};
