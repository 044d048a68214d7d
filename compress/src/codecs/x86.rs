//! The fixed-threshold encoder compiled for newer x86-64 levels and chosen at run time, so
//! that release builds stay portable to any x86-64 yet use the instructions servers have:
//! - x86-64-v3 (AVX2, BMI1/2, POPCNT, LZCNT): eight-lane compares with one `movmskps` per
//!   eight entries for the hit and sign words, `pext` to pack the hits' signs, and
//!   `popcnt`/`tzcnt`/`blsr` in the walk over the hits;
//! - x86-64-v4 (AVX-512F on top): sixteen-lane compares straight into mask registers, and
//!   `vpcompressd` writing the positions of each 16 entries' hits with no walk at all.
//!
//! Same bytes as the portable build (unit test below). `MURMUR_COMPRESS_BUILD=portable` (or
//! `x86-64-v3`) caps the choice, for comparison.

// Unsafe: calling a `#[target_feature]` function after checking the CPU, and one unaligned
// vector store into a slice of exactly its size.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256, __m512, __m512i, _CMP_GE_OQ, _mm256_and_ps, _mm256_castsi256_ps, _mm256_cmp_ps,
    _mm256_movemask_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_ps, _mm512_abs_ps,
    _mm512_add_epi32, _mm512_castps_si512, _mm512_cmp_ps_mask, _mm512_cmplt_epi32_mask,
    _mm512_maskz_compress_epi32, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setr_epi32,
    _mm512_setr_ps, _mm512_setzero_si512, _mm512_storeu_si512, _pext_u64,
};
use std::sync::OnceLock;

use super::{Compressed, Scan, Scratch, threshold_scan_with, word_slots, words_are_dense};
use crate::bits::SignPacker;

/// The builds of the fixed-threshold encoder, in increasing order of what they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Portable,
    V3,
    V4,
}

impl Level {
    pub(super) fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::V3 => "x86-64-v3",
            Level::V4 => "x86-64-v4",
        }
    }
}

/// The best build this CPU runs.
fn detect() -> Level {
    let v3 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("lzcnt");
    match (v3, is_x86_feature_detected!("avx512f")) {
        (true, true) => Level::V4,
        (true, false) => Level::V3,
        _ => Level::Portable,
    }
}

/// The best build this CPU runs, capped by `MURMUR_COMPRESS_BUILD`; decided once.
pub(super) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("MURMUR_COMPRESS_BUILD").as_deref() {
            Ok("portable") => Level::Portable,
            Ok("x86-64-v3") => Level::V3,
            _ => Level::V4,
        };
        detect().min(cap)
    })
}

/// The fixed-threshold encoder in the fastest build this CPU runs, or `None` for the
/// portable one.
pub(super) fn threshold_words(input: &[f32], t: f32, scratch: &mut Scratch) -> Option<Compressed> {
    match level() {
        // SAFETY: `level` has checked that the CPU supports every feature the function
        // enables; that is the only requirement of calling it.
        Level::V4 => Some(unsafe { threshold_words_v4(input, t, scratch) }),
        // SAFETY: as above.
        Level::V3 => Some(unsafe { threshold_words_v3(input, t, scratch) }),
        Level::Portable => None,
    }
}

/// Pass 1 of the fixed-threshold encoder in the fastest build this CPU runs, or `None` for
/// the portable one.
pub(super) fn threshold_scan(input: &[f32], t: f32, scratch: &mut Scratch) -> Option<Scan> {
    match level() {
        // SAFETY: as in `threshold_words`.
        Level::V4 => Some(unsafe { scan_v4(input, t, scratch) }),
        // SAFETY: as above.
        Level::V3 => Some(unsafe { scan_v3(input, t, scratch) }),
        Level::Portable => None,
    }
}

// Each build codes pass 2 in its own target-feature context too (BMI2 shifts on the writer).
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
fn threshold_words_v3(input: &[f32], t: f32, scratch: &mut Scratch) -> Compressed {
    scan_v3(input, t, scratch).sparse_sign(input.len(), t, scratch)
}

#[target_feature(enable = "avx512f,avx2,bmi1,bmi2,popcnt,lzcnt")]
fn threshold_words_v4(input: &[f32], t: f32, scratch: &mut Scratch) -> Compressed {
    scan_v4(input, t, scratch).sparse_sign(input.len(), t, scratch)
}

#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
fn scan_v3(input: &[f32], t: f32, scratch: &mut Scratch) -> Scan {
    let tv = _mm256_set1_ps(t);
    let hits = |chunk: &[f32; 64]| hit_word(chunk, tv);
    // The signs of the hits, packed: `pext` of the sign word by the hit word.
    let signs = |chunk: &[f32; 64], hit| _pext_u64(sign_word(chunk), hit);
    threshold_scan_with::<true>(input, t, scratch, hits, signs)
}

/// Bits set where |x| ≥ t (ordered: NaN never), for 64 entries: eight eight-lane compares.
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
#[inline]
fn hit_word(chunk: &[f32; 64], t: __m256) -> u64 {
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let mut hit = 0u64;
    for (k, e) in chunk.chunks_exact(8).enumerate() {
        let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_and_ps(lanes(e), magnitude), t);
        hit |= u64::from(_mm256_movemask_ps(ge) as u8) << (8 * k);
    }
    hit
}

/// The sign bits of 64 entries.
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
#[inline]
fn sign_word(chunk: &[f32; 64]) -> u64 {
    let mut sign = 0u64;
    for (k, e) in chunk.chunks_exact(8).enumerate() {
        sign |= u64::from(_mm256_movemask_ps(lanes(e)) as u8) << (8 * k);
    }
    sign
}

/// Eight consecutive entries as one vector: an unaligned load, without a raw pointer.
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
#[inline]
fn lanes(e: &[f32]) -> __m256 {
    _mm256_setr_ps(e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7])
}

#[target_feature(enable = "avx512f,avx2,bmi1,bmi2,popcnt,lzcnt")]
fn scan_v4(input: &[f32], t: f32, scratch: &mut Scratch) -> Scan {
    let dim = input.len();
    let tv = _mm512_set1_ps(t);
    let mut signs = SignPacker::new(&mut scratch.sign_words, dim);
    let positions = &mut scratch.gaps;
    let mut count = 0usize;
    let mut nonempty = 0usize;
    let zero = _mm512_setzero_si512();
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let chunks = input.chunks_exact(64);
    let rem = chunks.remainder();
    // Zero padding is never chosen (t > 0).
    let mut padded = [0f32; 64];
    padded[..rem.len()].copy_from_slice(rem);
    let tail = (!rem.is_empty()).then_some(&padded[..]);
    // One loop body for every chunk (a helper function would not be inlined here).
    for (w, chunk) in chunks.chain(tail).enumerate() {
        let base = 64 * w as u32;
        // Hits (|x| ≥ t, ordered: NaN never) by four sixteen-lane compares into masks.
        let x: [__m512; 4] = std::array::from_fn(|k| lanes16(&chunk[16 * k..16 * k + 16]));
        let hits = x.map(|v| _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(v), tv));
        let hit = (0..4).fold(0u64, |w, k| w | u64::from(hits[k]) << (16 * k));
        if hit == 0 {
            continue;
        }
        // The signs of the hits, packed by `pext`.
        let sign = (0..4).fold(0u64, |w, k| {
            let negative = _mm512_cmplt_epi32_mask(_mm512_castps_si512(x[k]), zero);
            w | u64::from(negative) << (16 * k)
        });
        signs.append(_pext_u64(sign, hit), hit.count_ones());
        let out = word_slots(positions, count);
        let dense = words_are_dense(count, nonempty);
        nonempty += 1;
        if !dense {
            // Sparse so far: a walk over the few set bits is cheaper than four compressions.
            let mut h = hit;
            let mut n = 0usize;
            while h != 0 {
                out[n] = base + h.trailing_zeros();
                n += 1;
                h &= h - 1;
            }
            count += n;
            continue;
        }
        // The positions of each sixteen lanes' hits compressed into one vector and stored
        // whole, the next store starting after them: no walk over the bits.
        let mut n = 0usize;
        for (k, &m) in hits.iter().enumerate() {
            let index = _mm512_add_epi32(iota, _mm512_set1_epi32((base + 16 * k as u32) as i32));
            let packed: __m512i = _mm512_maskz_compress_epi32(m, index);
            // At most 48 positions of this chunk precede (the `min` only tells the compiler,
            // so that the slice needs no check).
            let dst = &mut out[n.min(48)..n.min(48) + 16];
            // SAFETY: `dst` is sixteen u32 (64 bytes) of `positions`, and `storeu` needs no
            // alignment.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), packed) };
            n += m.count_ones() as usize;
        }
        count += n;
    }
    // Positions to gaps in place (a first-order recurrence the compiler vectorizes); the
    // position before the first is −1 in wrapping arithmetic.
    let mut prev = u32::MAX;
    for g in &mut positions[..count] {
        let p = *g;
        *g = p.wrapping_sub(prev).wrapping_sub(1);
        prev = p;
    }
    Scan {
        count,
        sign_words: signs.words().len(),
    }
}

/// Sixteen consecutive entries as one vector: an unaligned load, without a raw pointer.
#[target_feature(enable = "avx512f,avx2,bmi1,bmi2,popcnt,lzcnt")]
#[inline]
fn lanes16(e: &[f32]) -> __m512 {
    _mm512_setr_ps(
        e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11], e[12], e[13],
        e[14], e[15],
    )
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::threshold_scan_portable;
    use super::*;

    /// Byte-identical frames from every build this CPU runs and the portable one, over
    /// densities from 0 to 1, lengths that are not multiples of 64, long empty stretches (unary
    /// runs ≥ 32), density changing within a vector (the builds switch methods as it does) and
    /// special values.
    #[test]
    fn every_build_writes_the_same_bytes_as_the_portable_one() {
        let best = detect();
        if best == Level::Portable {
            eprintln!("this CPU lacks AVX2/BMI2: only the portable build runs here");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut a = Scratch::default();
        let mut b = Scratch::default();
        for case in 0..300 {
            let d = match case % 4 {
                0 => rng.random_range(0..200),
                1 => rng.random_range(0..5_000),
                _ => rng.random_range(0..200_000),
            };
            let density = [0.0005f32, 0.01, 0.1, 0.3, 0.9][case % 5];
            let gap_every = rng.random_range(1..50_000);
            // Every third vector is sparse in its first half and dense in its second.
            let mixed = case % 3 == 0;
            let v: Vec<f32> = (0..d)
                .map(|i| {
                    if i % gap_every < gap_every / 3 || (mixed && i < d / 2 && i % 97 != 0) {
                        0.0
                    } else if rng.random_bool(0.01) {
                        [
                            f32::NAN,
                            f32::INFINITY,
                            f32::NEG_INFINITY,
                            -0.0,
                            1.0 - density,
                        ][rng.random_range(0..5)]
                    } else {
                        rng.random_range(-1.0f32..1.0)
                    }
                })
                .collect();
            let t = 1.0 - density;
            let dim = v.len();
            let portable = threshold_scan_portable(&v, t, &mut b).sparse_sign(dim, t, &b);
            // SAFETY: `detect` found every feature of the v3 build (and of v4 when it ran).
            let v3 = unsafe { threshold_words_v3(&v, t, &mut a) };
            assert_eq!(v3, portable, "v3, case {case}: d={d} density={density}");
            assert_eq!(v3.encode(), portable.encode());
            if best == Level::V4 {
                // SAFETY: as above.
                let v4 = unsafe { threshold_words_v4(&v, t, &mut a) };
                assert_eq!(v4, portable, "v4, case {case}: d={d} density={density}");
            }
        }
    }
}
