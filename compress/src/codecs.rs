//! The compressors: fused kernels over `&[f32]` that produce a [`Compressed`] directly in its
//! coded form.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wide::{CmpGe, f32x4, i8x16, i16x8, i16x16, i32x8};

use crate::bits::{BitWriter, Golomb, SignPacker, expand_word, put_gamma};
use crate::spec::{CodecSpec, MAX_QSGD_LEVELS};
use crate::wire::{Compressed, Format};

#[cfg(target_arch = "x86_64")]
mod x86;

/// A compressor Q. Works on a flat `&[f32]`; the caller owns any residual.
pub trait Compressor: Send + std::fmt::Debug {
    /// The codec this compressor runs.
    fn spec(&self) -> &CodecSpec;
    /// Compresses `input` (e.g. the CHOCO difference x − x̂ the caller owns). May update
    /// internal state (seeded rng, scratch buffers) but never keeps a residual itself.
    fn compress(&mut self, input: &[f32]) -> Compressed;
}

/// Builds the compressor for `spec`; `seed` drives every random choice (rand-k, QSGD, the
/// adaptive threshold's sample). Parameters out of range are clamped (density to (0, 1],
/// levels to 1..=65535, a non-positive tau sends only non-zero entries); use
/// [`CodecSpec::validate`] to reject them instead.
pub fn build(spec: &CodecSpec, seed: u64) -> Box<dyn Compressor> {
    Box::new(Codec {
        spec: spec.clone(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        scratch: Scratch::default(),
    })
}

#[derive(Debug, Default)]
struct Scratch {
    selection: Selection,
    keys: Vec<u32>,
    /// `(key << 32) | index` of the entries above the adaptive threshold's bracket.
    candidates: Vec<u64>,
    /// Gaps before the entries the fixed-threshold encoder sends (plus slack for a word).
    gaps: Vec<u32>,
    /// Their signs, packed.
    sign_words: Vec<u64>,
}

#[derive(Debug)]
struct Codec {
    spec: CodecSpec,
    rng: ChaCha8Rng,
    scratch: Scratch,
}

/// Entries sent for `density` of `dim`: ceil(density · dim), at least one when dim > 0.
pub fn entries_for_density(density: f32, dim: usize) -> usize {
    if dim == 0 {
        return 0;
    }
    let d = if density.is_finite() {
        density.clamp(0.0, 1.0)
    } else {
        1.0
    };
    ((f64::from(d) * dim as f64).ceil() as usize).clamp(1, dim)
}

/// The entropy bound on bits per sent entry of a sparse sign message with `nnz` of `dim`
/// entries: H_b(p)/p + 1 with p = nnz/dim (the positions, then one sign bit each). What the
/// index coding is measured against; `None` for an empty message.
pub fn entropy_bound_bits_per_entry(nnz: usize, dim: usize) -> Option<f64> {
    if nnz == 0 || dim == 0 || nnz > dim {
        return None;
    }
    let p = nnz as f64 / dim as f64;
    let h = if p >= 1.0 {
        0.0
    } else {
        -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
    };
    Some(h / p + 1.0)
}

impl Compressor for Codec {
    fn spec(&self) -> &CodecSpec {
        &self.spec
    }

    fn compress(&mut self, input: &[f32]) -> Compressed {
        match self.spec {
            CodecSpec::DenseF32 => dense_f32(input),
            CodecSpec::DenseF16 => dense_f16(input),
            CodecSpec::ThresholdSign { tau } => {
                threshold_sign(input, tau, ScaleRule::Tau, &mut self.scratch)
            }
            CodecSpec::AdaptiveThreshold { density } => {
                let k = entries_for_density(density, input.len());
                adaptive_threshold(input, k, ScaleRule::Tau, &mut self.scratch, &mut self.rng)
            }
            CodecSpec::ScaledThreshold { density } => {
                let k = entries_for_density(density, input.len());
                let rule = ScaleRule::MeanMagnitude;
                adaptive_threshold(input, k, rule, &mut self.scratch, &mut self.rng)
            }
            CodecSpec::TopK { density } => {
                let k = entries_for_density(density, input.len());
                top_k(input, k, &mut self.scratch, &mut self.rng)
            }
            CodecSpec::RandK { density, unbiased } => {
                let k = entries_for_density(density, input.len());
                rand_k(input, k, unbiased, &mut self.rng)
            }
            CodecSpec::ScaledSign => scaled_sign(input),
            CodecSpec::Qsgd { levels } => {
                qsgd(input, levels.clamp(1, MAX_QSGD_LEVELS), &mut self.rng)
            }
        }
    }
}

fn dense_f32(input: &[f32]) -> Compressed {
    let mut payload = Vec::with_capacity(input.len() * 4);
    for x in input {
        payload.extend_from_slice(&x.to_le_bytes());
    }
    Compressed {
        format: Format::DenseF32,
        dim: input.len(),
        count: input.len(),
        param: 0,
        scale: 0.0,
        payload,
    }
}

fn dense_f16(input: &[f32]) -> Compressed {
    let mut payload = Vec::with_capacity(input.len() * 2);
    for &x in input {
        payload.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
    }
    Compressed {
        format: Format::DenseF16,
        dim: input.len(),
        count: input.len(),
        param: 0,
        scale: 0.0,
        payload,
    }
}

/// Order-preserving key of |x| for selection: the magnitude's bits, NaN mapped to 0 (never
/// selected).
#[inline(always)]
fn magnitude_key(x: f32) -> u32 {
    let a = x.to_bits() & 0x7fff_ffff;
    if a > 0x7f80_0000 { 0 } else { a }
}

/// Sample size for the bracket of the k-th largest magnitude; inputs up to 4× this size are
/// selected in full.
const SAMPLE: usize = 4_096;

/// A lower bracket `lo` > 0 for the k-th largest magnitude key of a large input: the rank of
/// the k-th largest is estimated from a seeded sample of [`SAMPLE`] keys and `lo` is taken 4
/// standard deviations (plus 8) below it, so about k keys are ≥ `lo`. `None` for small inputs
/// or when the bracket would be 0 (then nothing is gained over a full selection).
fn sampled_bracket(
    input: &[f32],
    k: usize,
    keys: &mut Vec<u32>,
    rng: &mut ChaCha8Rng,
) -> Option<u32> {
    let d = input.len();
    if d <= 4 * SAMPLE || k == 0 {
        return None;
    }
    keys.clear();
    keys.extend((0..SAMPLE).map(|_| magnitude_key(input[rng.random_range(0..d)])));
    let rank = k.min(d) as f64 * SAMPLE as f64 / d as f64;
    let rank_lo = (rank + 4.0 * rank.sqrt() + 8.0).ceil() as usize;
    if rank_lo >= SAMPLE {
        return None;
    }
    let (_, lo, _) = keys.select_nth_unstable(SAMPLE - rank_lo);
    (*lo > 0).then_some(*lo)
}

/// The k-th largest key among `keys` (k ≤ keys.len(), k ≥ 1); reorders `keys`.
fn kth_of(keys: &mut [u32], k: usize) -> u32 {
    let nth = keys.len() - k;
    *keys.select_nth_unstable(nth).1
}

/// The k-th largest |x| (k ≥ 1), NaN counted as 0. Exact.
///
/// Small inputs: `select_nth_unstable` on all magnitude keys. Large inputs: a seeded sample
/// brackets the k-th largest ([`sampled_bracket`]), one SIMD pass gathers only the keys above
/// the bracket (≈ k of them), and the exact k-th largest is selected among those. If the
/// bracket misses (fewer than k candidates) it falls back to the full selection, so the result
/// never depends on the sample — only the time does.
pub(crate) fn kth_largest_magnitude(
    input: &[f32],
    k: usize,
    keys: &mut Vec<u32>,
    rng: &mut ChaCha8Rng,
) -> f32 {
    if input.is_empty() || k == 0 {
        return f32::INFINITY;
    }
    let k = k.min(input.len());
    if let Some(lo) = sampled_bracket(input, k, keys, rng) {
        keys.clear();
        gather_keys_at_least(input, lo, keys);
        if keys.len() >= k {
            return f32::from_bits(kth_of(keys, k));
        }
    }
    keys.clear();
    keys.extend(input.iter().map(|&x| magnitude_key(x)));
    f32::from_bits(kth_of(keys, k))
}

/// `AdaptiveThreshold` / `ScaledThreshold`: tau = the exact k-th largest |x|, then every entry
/// with |x| ≥ tau. On large inputs pass 1 of the fixed-threshold encoder at the sampled
/// bracket finds the candidates (≈ k entries, with their signs); tau is selected among their
/// magnitudes and the sent entries are exactly the candidates at or above it, so the input is
/// read once in full (the result is the same as selecting tau and running [`threshold_sign`]).
fn adaptive_threshold(
    input: &[f32],
    k: usize,
    rule: ScaleRule,
    scratch: &mut Scratch,
    rng: &mut ChaCha8Rng,
) -> Compressed {
    if k > 0 && u32::try_from(input.len()).is_ok() {
        let k = k.min(input.len());
        if let Some(lo) = sampled_bracket(input, k, &mut scratch.keys, rng) {
            // The candidates: pass 1 of the fixed-threshold encoder at the bracket.
            let scan = threshold_scan(input, f32::from_bits(lo), scratch);
            if scan.count >= k {
                return pick_from_scan(input, k, scan, rule, scratch);
            }
        }
        let keys = &mut scratch.keys;
        keys.clear();
        keys.extend(input.iter().map(|&x| magnitude_key(x)));
        let tau = f32::from_bits(kth_of(keys, k));
        return threshold_sign(input, tau, rule, scratch);
    }
    let tau = kth_largest_magnitude(input, k, &mut scratch.keys, rng);
    threshold_sign(input, tau, rule, scratch)
}

/// The adaptive message from the candidates a scan at the bracket left in `scratch` (at
/// least `k` of them): tau = the k-th largest magnitude among them, and the entries sent are
/// the candidates at or above it, with their gaps recomputed and their signs taken from the
/// scan's. In place over the candidates' gaps (an entry's new gap is written at or before
/// where its old one was read).
fn pick_from_scan(
    input: &[f32],
    k: usize,
    scan: Scan,
    rule: ScaleRule,
    scratch: &mut Scratch,
) -> Compressed {
    let n = scan.count;
    let Scratch {
        gaps,
        sign_words,
        keys,
        candidates,
        selection,
        ..
    } = scratch;
    // The candidates' magnitude keys in index order (`candidates` keeps key << 32 | position).
    candidates.clear();
    let mut next = 0u32;
    for &g in &gaps[..n] {
        let p = next + g;
        next = p + 1;
        let key = magnitude_key(input[p as usize]);
        candidates.push(u64::from(key) << 32 | u64::from(p));
    }
    keys.clear();
    keys.extend(candidates.iter().map(|&c| (c >> 32) as u32));
    let tau_key = kth_of(keys, k);
    // Stream compaction without a branch on the comparison (at 1% about half the candidates
    // fall below tau, at random): every candidate writes its gap and offers its sign bit, and
    // the output only advances for those kept.
    let signs = &mut selection.signs;
    signs.clear();
    let (mut acc, mut nbits) = (0u64, 0u32);
    let mut sum_abs = 0f64;
    let mut kept = 0usize;
    let mut next = 0u32;
    for (i, &c) in candidates.iter().enumerate() {
        let key = (c >> 32) as u32;
        let take = key >= tau_key;
        let p = c as u32;
        // kept ≤ i < n: inside the gaps the scan wrote.
        gaps[kept] = p.wrapping_sub(next);
        next = if take { p + 1 } else { next };
        kept += usize::from(take);
        acc |= ((sign_words[i / 64] >> (i % 64)) & u64::from(take)) << nbits;
        nbits += u32::from(take);
        if nbits == 64 {
            signs.push(acc);
            (acc, nbits) = (0, 0);
        }
        if matches!(rule, ScaleRule::MeanMagnitude) {
            // key ≥ tau_key > 0 when taken: a finite magnitude (NaN has key 0). Adding 0.0
            // to the positive sum leaves it unchanged.
            sum_abs += if take {
                f64::from(f32::from_bits(key))
            } else {
                0.0
            };
        }
    }
    if nbits > 0 {
        signs.push(acc);
    }
    let scale = match rule {
        ScaleRule::Tau => f32::from_bits(tau_key),
        ScaleRule::MeanMagnitude => (sum_abs / kept.max(1) as f64) as f32,
    };
    sparse_sign_from_gaps(input.len(), scale, &gaps[..kept], signs)
}

/// Pushes the magnitude key of every entry whose key is ≥ `lo`, in index order. For lo > 0 the
/// test is |x| ≥ f32::from_bits(lo) (positive floats order like their bits; NaN has key 0 and
/// fails the ordered compare), so it runs on the same SIMD hit words as the threshold encoder
/// and touches only the ≈ k entries above the bracket.
fn gather_keys_at_least(input: &[f32], lo: u32, keys: &mut Vec<u32>) {
    if lo == 0 {
        keys.extend(input.iter().map(|&x| magnitude_key(x)));
        return;
    }
    let tv = f32x4::splat(f32::from_bits(lo));
    let mut chunks = input.chunks_exact(64);
    for chunk in &mut chunks {
        let chunk: &[f32; 64] = chunk.try_into().expect("chunks_exact(64)");
        let mut m = hit_word(chunk, tv);
        while m != 0 {
            keys.push(magnitude_key(chunk[m.trailing_zeros() as usize]));
            m &= m - 1;
        }
    }
    keys.extend(
        chunks
            .remainder()
            .iter()
            .map(|&x| magnitude_key(x))
            .filter(|&key| key >= lo),
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScaleRule {
    /// Send ±tau (Strom).
    Tau,
    /// Send ± the mean |x| of the chosen entries.
    MeanMagnitude,
}

/// The sign bits of 16 lanes as a 16-bit mask: two signed-saturating narrowings keep every
/// lane's sign, then one byte movemask (packssdw/packsswb/pmovmskb on SSE2) replaces four
/// float movemasks and their shifts.
#[inline(always)]
fn signs16(v: [f32x4; 4]) -> u64 {
    let bits = |x: f32x4| x.to_array().map(|f| f.to_bits() as i32);
    let (a, b, c, d) = (bits(v[0]), bits(v[1]), bits(v[2]), bits(v[3]));
    let ab = i32x8::new([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]);
    let cd = i32x8::new([c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3]]);
    let lo = i16x8::from_i32x8_saturate(ab).to_array();
    let hi = i16x8::from_i32x8_saturate(cd).to_array();
    let mut all = [0i16; 16];
    all[..8].copy_from_slice(&lo);
    all[8..].copy_from_slice(&hi);
    u64::from(i8x16::from_i16x16_saturate(i16x16::new(all)).move_mask() as u16)
}

/// The sign bits of 64 inputs.
#[inline(always)]
fn sign_word(chunk: &[f32; 64]) -> u64 {
    let mut s = 0u64;
    for (k, sixteen) in chunk.chunks_exact(16).enumerate() {
        let q =
            |i: usize| f32x4::from([sixteen[i], sixteen[i + 1], sixteen[i + 2], sixteen[i + 3]]);
        s |= signs16([q(0), q(4), q(8), q(12)]) << (16 * k);
    }
    s
}

/// Bits set where |x| ≥ t (NaN never: the comparison is ordered), for 64 inputs: sixteen
/// four-lane compares, narrowed to one 16-bit byte movemask per 16 lanes (`wide` picks
/// SSE/NEON or a scalar fallback). This one word per 64 inputs is all the dense part of the encoder does.
#[inline(always)]
fn hit_word(chunk: &[f32; 64], t: f32x4) -> u64 {
    let mut m = 0u64;
    for (k, sixteen) in chunk.chunks_exact(16).enumerate() {
        let hit = |i: usize| {
            let q = [sixteen[i], sixteen[i + 1], sixteen[i + 2], sixteen[i + 3]];
            f32x4::from(q).abs().cmp_ge(t)
        };
        // Compare masks are all ones or all zeros, so their sign bits are the hits.
        m |= signs16([hit(0), hit(4), hit(8), hit(12)]) << (16 * k);
    }
    m
}

/// The entries a threshold codec sends, gathered in one pass over the input.
#[derive(Debug, Default)]
struct Selection {
    /// Indices with |x| ≥ t, increasing.
    picked: Vec<usize>,
    /// Sign bits of the picked entries (bit set = negative), packed in entry order, LSB first.
    signs: Vec<u64>,
    /// Σ |x| over the picked entries (f64, index order), when asked for.
    sum_abs: f64,
}

impl Selection {
    /// One pass over `chunks_exact(64)`: the hit word of each chunk, then, only for its set
    /// bits, the index and the sign taken from the chunk while it is in L1. No mask vector is
    /// stored and nothing is read twice. `t` must be > 0 so that zeros are never chosen.
    fn gather<const SUM: bool>(&mut self, input: &[f32], t: f32) {
        self.picked.clear();
        self.signs.clear();
        self.sum_abs = 0.0;
        let tv = f32x4::splat(t);
        let mut acc = 0u64;
        let mut n = 0u32;
        let mut take = |base: usize, chunk: &[f32; 64], mut m: u64| {
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                let x = chunk[j];
                self.picked.push(base + j);
                acc |= u64::from(x.to_bits() >> 31) << n;
                n += 1;
                if n == 64 {
                    self.signs.push(acc);
                    acc = 0;
                    n = 0;
                }
                if SUM {
                    self.sum_abs += f64::from(x.abs());
                }
                m &= m - 1;
            }
        };
        let mut chunks = input.chunks_exact(64);
        for (w, chunk) in (&mut chunks).enumerate() {
            let chunk: &[f32; 64] = chunk.try_into().expect("chunks_exact(64)");
            let m = hit_word(chunk, tv);
            if m != 0 {
                take(64 * w, chunk, m);
            }
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            // Zero padding is never chosen (t > 0).
            let mut padded = [0f32; 64];
            padded[..rem.len()].copy_from_slice(rem);
            take(input.len() - rem.len(), &padded, hit_word(&padded, tv));
        }
        if n > 0 {
            self.signs.push(acc);
        }
    }
}

fn threshold_sign(input: &[f32], tau: f32, rule: ScaleRule, scratch: &mut Scratch) -> Compressed {
    // Smallest positive threshold: zeros (and NaN) are never sent.
    let t = if tau > 0.0 { tau } else { f32::from_bits(1) };
    let t = if t.is_nan() { f32::INFINITY } else { t };
    let sel = &mut scratch.selection;
    match rule {
        ScaleRule::Tau if u32::try_from(input.len()).is_ok() => threshold_words(input, t, scratch),
        ScaleRule::Tau => {
            sel.gather::<false>(input, t);
            finish_threshold(input.len(), t, rule, sel)
        }
        ScaleRule::MeanMagnitude => {
            sel.gather::<true>(input, t);
            finish_threshold(input.len(), t, rule, sel)
        }
    }
}

/// Which build of the fixed-threshold encoder runs on this machine: `"x86-64-v4"` (AVX-512F
/// on top of v3), `"x86-64-v3"` (AVX2, BMI1/2, POPCNT, LZCNT), both chosen at run time, or
/// `"portable"` (SSE2 on x86-64, NEON on aarch64, scalar elsewhere). All write the same bytes;
/// `MURMUR_COMPRESS_BUILD=portable` or `=x86-64-v3` caps the choice (for comparison).
pub fn threshold_encoder_build() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    return x86::level().name();
    #[cfg(not(target_arch = "x86_64"))]
    "portable"
}

/// Fixed-threshold sparse-sign encoder at `t` > 0: the best build for this CPU
/// ([`threshold_encoder_build`]).
fn threshold_words(input: &[f32], t: f32, scratch: &mut Scratch) -> Compressed {
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = x86::threshold_words(input, t, scratch) {
        return c;
    }
    let scan = threshold_scan_portable(input, t, scratch);
    scan.sparse_sign(input.len(), t, scratch)
}

/// Pass 1 of the fixed-threshold encoder at `t` > 0 in the best build for this CPU: the gaps
/// before the entries with |x| ≥ t in `scratch.gaps`, their signs packed in
/// `scratch.sign_words`.
fn threshold_scan(input: &[f32], t: f32, scratch: &mut Scratch) -> Scan {
    #[cfg(target_arch = "x86_64")]
    if let Some(scan) = x86::threshold_scan(input, t, scratch) {
        return scan;
    }
    threshold_scan_portable(input, t, scratch)
}

/// [`threshold_scan_with`] on baseline SIMD (`wide`: SSE2 on x86-64, NEON on aarch64).
fn threshold_scan_portable(input: &[f32], t: f32, scratch: &mut Scratch) -> Scan {
    let tv = f32x4::splat(t);
    let hits = |chunk: &[f32; 64]| hit_word(chunk, tv);
    let signs = |chunk: &[f32; 64], hit| sign_word(chunk) & hit;
    threshold_scan_with::<false>(input, t, scratch, hits, signs)
}

/// What pass 1 left in the scratch buffers: `count` gaps in `gaps`, their signs in the first
/// `sign_words` of `sign_words`.
#[derive(Debug, Clone, Copy)]
struct Scan {
    count: usize,
    sign_words: usize,
}

impl Scan {
    /// Pass 2: the sparse-sign message with scale `t` of everything the scan found.
    #[inline(always)]
    fn sparse_sign(self, dim: usize, t: f32, scratch: &Scratch) -> Compressed {
        sparse_sign_from_gaps(
            dim,
            t,
            &scratch.gaps[..self.count],
            &scratch.sign_words[..self.sign_words],
        )
    }
}

/// The 64 slots of `buf` from `at` on: room for a whole word of hits, written before their
/// number is known. Grows `buf` (doubling) when needed, which is rare.
#[inline(always)]
fn word_slots(buf: &mut Vec<u32>, at: usize) -> &mut [u32; 64] {
    if buf.len() < at + 64 {
        let len = (at + 64).max(2 * buf.len());
        buf.resize(len, 0);
    }
    (&mut buf[at..at + 64]).try_into().expect("64 slots")
}

/// Whether the words with hits so far had ≥ 3 hits on average: then pass 1 expands a word
/// without a loop over its bits (unconditional slots, or vector compression), else with one.
/// The choice follows the density, not the word, so the branch on it is predicted.
#[inline(always)]
fn words_are_dense(hits: usize, nonempty_words: usize) -> bool {
    hits >= 3 * nonempty_words
}

/// Where pass 1 of [`threshold_scan_with`] puts the hits of each non-empty word.
struct HitSink<'a> {
    gaps: &'a mut Vec<u32>,
    signs: SignPacker<'a>,
    count: usize,
    nonempty: usize,
    /// The position after the last hit so far.
    next: u32,
}

impl HitSink<'_> {
    // A method rather than a closure so that it is inlined into each build of the encoder.
    #[inline(always)]
    fn take<const PACKED: bool>(&mut self, base: usize, hit: u64, sign: u64) {
        let out = word_slots(self.gaps, self.count);
        let (packed, k) = if words_are_dense(self.count, self.nonempty) {
            expand_word::<8, PACKED>(base as u32, hit, sign, &mut self.next, out)
        } else {
            expand_word::<0, PACKED>(base as u32, hit, sign, &mut self.next, out)
        };
        self.signs.append(packed, k);
        self.count += k as usize;
        self.nonempty += 1;
    }
}

/// Pass 1 of the fixed-threshold sparse-sign encoder (two passes, of which only the first
/// reads the input). It is branch-free SIMD over the input: `hits` gives the hit word of each
/// 64 entries and, for a non-empty word only, `signs` their signs (bit j for entry j, or with
/// `PACKED` already packed to the hits as `pext` does); the gaps before the hits go to a
/// buffer ([`expand_word`]) and their signs to the packed sign words while the chunk is hot.
/// The count then fixes the Golomb parameter, and pass 2 ([`Scan::sparse_sign`],
/// [`Golomb::put_gaps`]) codes the gaps from the buffer (4 bytes per sent entry). Same bytes
/// as gathering indices and calling [`sparse_sign`].
#[inline(always)]
fn threshold_scan_with<const PACKED: bool>(
    input: &[f32],
    t: f32,
    scratch: &mut Scratch,
    hits: impl Fn(&[f32; 64]) -> u64,
    signs: impl Fn(&[f32; 64], u64) -> u64,
) -> Scan {
    debug_assert!(t > 0.0);
    let dim = input.len();
    let mut sink = HitSink {
        gaps: &mut scratch.gaps,
        signs: SignPacker::new(&mut scratch.sign_words, dim),
        count: 0,
        nonempty: 0,
        next: 0,
    };
    let chunks = input.chunks_exact(64);
    // The tail zero-padded to a whole chunk (padding is never chosen, t > 0); it starts at
    // 64 × the number of whole chunks like any other.
    let rem = chunks.remainder();
    let mut padded = [0f32; 64];
    padded[..rem.len()].copy_from_slice(rem);
    let tail = (!rem.is_empty()).then_some(&padded[..]);
    for (w, chunk) in chunks.chain(tail).enumerate() {
        let chunk: &[f32; 64] = chunk.try_into().expect("chunks of 64");
        let hit = hits(chunk);
        // Empty words cost nothing more: at low density most are empty.
        if hit != 0 {
            sink.take::<PACKED>(64 * w, hit, signs(chunk, hit));
        }
    }
    Scan {
        count: sink.count,
        sign_words: sink.signs.words().len(),
    }
}

/// The sparse-sign message (scale `t`) of the entries after `gaps`, with their signs packed
/// in `sign_words` (bits past the last entry zero): pass 2 of the fixed-threshold encoder.
#[inline(always)]
fn sparse_sign_from_gaps(dim: usize, t: f32, gaps: &[u32], sign_words: &[u64]) -> Compressed {
    let count = gaps.len();
    let m = golomb_for(count, dim);
    let payload = sign_bytes(sign_words, count, count + 16);
    let payload = Golomb::new(m).put_gaps(gaps, dim, payload);
    let scale = if count == 0 { 0.0 } else { t };
    Compressed {
        format: Format::SparseSign,
        dim,
        count,
        param: m,
        scale,
        payload,
    }
}

/// The sparse-sign message of a selection made at threshold `t` > 0.
fn finish_threshold(dim: usize, t: f32, rule: ScaleRule, sel: &Selection) -> Compressed {
    let scale = match rule {
        ScaleRule::Tau => t,
        ScaleRule::MeanMagnitude => (sel.sum_abs / sel.picked.len().max(1) as f64) as f32,
    };
    let scale = if sel.picked.is_empty() { 0.0 } else { scale };
    sparse_sign(dim, scale, sel)
}

/// The leading ⌈count/8⌉ bytes of a sparse-sign payload from the packed sign words of
/// `count` entries (bits past `count` zero, so the kept padding is zero), with room for
/// `more` bytes after them.
fn sign_bytes(sign_words: &[u64], count: usize, more: usize) -> Vec<u8> {
    let n = count.div_ceil(8);
    let mut payload = Vec::with_capacity(n + more + 8);
    for w in sign_words {
        payload.extend_from_slice(&w.to_le_bytes());
    }
    payload.truncate(n);
    payload
}

/// Golomb parameter for `count` entries among `dim`.
fn golomb_for(count: usize, dim: usize) -> u32 {
    if dim == 0 {
        1
    } else {
        Golomb::parameter_for_density(count as f64 / dim as f64)
    }
}

/// The sparse-sign payload: the packed sign bits, then the Golomb-coded gaps of the picked
/// indices (the parameter needs the count, so coding waits for the gather pass).
fn sparse_sign(dim: usize, scale: f32, sel: &Selection) -> Compressed {
    let count = sel.picked.len();
    let m = golomb_for(count, dim);
    let golomb = Golomb::new(m);
    // Gap bits ≈ count · (log2 m + 2); reserve once.
    let gap_bytes = count * (34 - m.leading_zeros() as usize + 2) / 8 + 16;
    let mut payload = sign_bytes(&sel.signs, count, gap_bytes);
    let mut gaps = BitWriter::with_capacity(gap_bytes);
    golomb.put_index_gaps(&mut gaps, &sel.picked);
    payload.extend_from_slice(&gaps.finish());
    Compressed {
        format: Format::SparseSign,
        dim,
        count,
        param: m,
        scale,
        payload,
    }
}

/// Sparse values at sorted `indices`.
fn sparse_values(dim: usize, indices: &[usize], value: impl Fn(usize) -> f32) -> Compressed {
    let count = indices.len();
    let m = golomb_for(count, dim);
    let golomb = Golomb::new(m);
    let mut payload = Vec::with_capacity(count * 4 + count * 2 + 16);
    for &i in indices {
        payload.extend_from_slice(&value(i).to_le_bytes());
    }
    let mut gaps = BitWriter::with_capacity(count * 2 + 16);
    golomb.put_index_gaps(&mut gaps, indices);
    payload.extend_from_slice(&gaps.finish());
    Compressed {
        format: Format::SparseValues,
        dim,
        count,
        param: m,
        scale: 0.0,
        payload,
    }
}

/// Exactly `k` largest |x| (ties at the k-th magnitude broken by lower index; NaN and zeros
/// never chosen, so fewer than k when there are fewer non-zero entries).
fn top_k(input: &[f32], k: usize, scratch: &mut Scratch, rng: &mut ChaCha8Rng) -> Compressed {
    let dim = input.len();
    if dim == 0 || k == 0 {
        return sparse_values(dim, &[], |_| 0.0);
    }
    let kth = kth_largest_magnitude(input, k, &mut scratch.keys, rng).to_bits();
    let mut indices = Vec::with_capacity(k);
    if kth == 0 {
        // Fewer than k non-zero entries: send all of them.
        indices.extend((0..dim).filter(|&i| magnitude_key(input[i]) > 0));
    } else {
        let above = input.iter().filter(|&&x| magnitude_key(x) > kth).count();
        let mut ties = k.saturating_sub(above);
        for (i, &x) in input.iter().enumerate() {
            let key = magnitude_key(x);
            if key > kth {
                indices.push(i);
            } else if key == kth && ties > 0 {
                indices.push(i);
                ties -= 1;
            }
        }
    }
    sparse_values(dim, &indices, |i| input[i])
}

/// `k` coordinates uniformly without replacement; values scaled by d/k when unbiased.
fn rand_k(input: &[f32], k: usize, unbiased: bool, rng: &mut ChaCha8Rng) -> Compressed {
    let dim = input.len();
    let k = k.min(dim);
    let mut indices = rand::seq::index::sample(rng, dim, k).into_vec();
    indices.sort_unstable();
    let factor = if unbiased && k > 0 {
        (dim as f64 / k as f64) as f32
    } else {
        1.0
    };
    sparse_values(dim, &indices, |i| input[i] * factor)
}

/// One sign bit per coordinate and scale = mean |x| (f64 sum in index order).
fn scaled_sign(input: &[f32]) -> Compressed {
    let dim = input.len();
    let mut payload = Vec::with_capacity(dim.div_ceil(8));
    let mut sum = 0f64;
    let mut chunks = input.chunks_exact(8);
    for c in &mut chunks {
        let mut byte = 0u8;
        let mut part = 0f32;
        for (j, &x) in c.iter().enumerate() {
            byte |= ((x.to_bits() >> 31) as u8) << j;
            part += x.abs();
        }
        sum += f64::from(part);
        payload.push(byte);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut byte = 0u8;
        for (j, &x) in rem.iter().enumerate() {
            byte |= ((x.to_bits() >> 31) as u8) << j;
            sum += f64::from(x.abs());
        }
        payload.push(byte);
    }
    let scale = if dim == 0 {
        0.0
    } else {
        (sum / dim as f64) as f32
    };
    Compressed {
        format: Format::DenseSign,
        dim,
        count: dim,
        param: 0,
        scale,
        payload,
    }
}

/// QSGD with `levels` levels: level l = floor(s·|x|/‖x‖₂) rounded up with probability equal
/// to the remainder (unbiased), coded as Elias-gamma(l + 1) plus a sign bit when l > 0.
fn qsgd(input: &[f32], levels: u32, rng: &mut ChaCha8Rng) -> Compressed {
    let dim = input.len();
    let norm_sq: f64 = input.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let norm = norm_sq.sqrt() as f32;
    let mut w = BitWriter::with_capacity(dim / 4 + 16);
    let mut nonzero = 0usize;
    if norm > 0.0 && norm.is_finite() {
        let s = f64::from(levels);
        let inv = s / f64::from(norm);
        for &x in input {
            let a = (f64::from(x.abs()) * inv).min(s);
            let floor = a.floor();
            let up = rng.random::<f64>() < a - floor;
            let level = (floor as u64 + u64::from(up)).min(u64::from(levels));
            put_gamma(&mut w, level + 1);
            if level > 0 {
                w.put(u64::from(x.is_sign_negative()), 1);
                nonzero += 1;
            }
        }
    } else {
        for _ in 0..dim {
            put_gamma(&mut w, 1);
        }
    }
    let scale = if nonzero == 0 { 0.0 } else { norm };
    Compressed {
        format: Format::Qsgd,
        dim,
        count: nonzero,
        param: levels,
        scale,
        payload: w.finish(),
    }
}
