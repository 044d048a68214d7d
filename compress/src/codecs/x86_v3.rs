//! The fixed-threshold encoder compiled for x86-64-v3 (AVX2, BMI1/2, POPCNT, LZCNT) and chosen
//! at run time, so that release builds stay portable to any x86-64 yet use the instructions
//! almost every server has: eight-lane compares with one `movmskps` per eight entries for the
//! hit and sign words, `pext` to pack the hits' signs, and `popcnt`/`tzcnt`/`blsr` in the walk
//! over the hits. Same bytes as the portable build (unit test below).

// The one unsafe operation is calling a `#[target_feature]` function, after checking the CPU.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256, _CMP_GE_OQ, _mm256_and_ps, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_movemask_ps,
    _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_ps, _pext_u64,
};

use super::{Compressed, Scratch, threshold_words_with};

/// Whether this CPU has every feature [`threshold_words_v3`] is compiled for (std caches the
/// answer, so this is a few loads).
fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("lzcnt")
}

/// The x86-64-v3 encoder, or `None` when the CPU lacks a feature it needs.
pub(super) fn threshold_words(input: &[f32], t: f32, scratch: &mut Scratch) -> Option<Compressed> {
    if !available() {
        return None;
    }
    // SAFETY: `available` has just checked that the CPU supports every feature
    // `threshold_words_v3` enables; that is the only requirement of calling it.
    Some(unsafe { threshold_words_v3(input, t, scratch) })
}

#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
fn threshold_words_v3(input: &[f32], t: f32, scratch: &mut Scratch) -> Compressed {
    let tv = _mm256_set1_ps(t);
    let hits = |chunk: &[f32; 64]| hit_word(chunk, tv);
    // The signs of the hits, packed: `pext` of the sign word by the hit word.
    let signs = |chunk: &[f32; 64], hit| _pext_u64(sign_word(chunk), hit);
    threshold_words_with::<true>(input, t, scratch, hits, signs)
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

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::threshold_words_portable;
    use super::*;

    /// Byte-identical frames from both builds, over densities from 0 to 1, lengths that are
    /// not multiples of 64, long empty stretches (unary runs ≥ 32) and special values.
    #[test]
    fn v3_and_portable_builds_write_the_same_bytes() {
        if !available() {
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
            let v: Vec<f32> = (0..d)
                .map(|i| {
                    if i % gap_every < gap_every / 3 {
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
            let fast = threshold_words(&v, t, &mut a).expect("available");
            let portable = threshold_words_portable(&v, t, &mut b);
            assert_eq!(fast, portable, "case {case}: d={d} density={density}");
            assert_eq!(fast.encode(), portable.encode());
        }
    }
}
