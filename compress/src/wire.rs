//! `Compressed`: one message in its canonical coded form, the postcard wire envelope, and the
//! strict decoder.
//!
//! A `Compressed` keeps the coded payload (bit-packed signs, Golomb-coded index gaps, values)
//! rather than expanded index vectors: `decode` validates the payload in one pass without
//! allocating beyond a copy of it, and `add_to` then walks the bit stream straight into the
//! caller's vector. The payload is canonical (padding bits are zero, no spare bytes), so byte
//! equality is message equality.

use serde::{Deserialize, Serialize};

use crate::bits::{BitError, BitReader, Golomb, MAX_GOLOMB_M, get_gamma};
use crate::spec::MAX_QSGD_LEVELS;

/// Version of the wire envelope this crate writes and accepts.
pub const FORMAT_VERSION: u8 = 1;

/// How a message's payload is laid out (the `codec` id on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Format {
    /// `dim` little-endian f32.
    DenseF32 = 0,
    /// `dim` little-endian IEEE half floats.
    DenseF16 = 1,
    /// Sparse ±scale: `ceil(count/8)` sign bytes (bit set = negative), then Golomb-coded gaps.
    SparseSign = 2,
    /// Sparse values: `count` little-endian f32, then Golomb-coded gaps.
    SparseValues = 3,
    /// Dense ±scale: `ceil(dim/8)` sign bytes (bit set = negative).
    DenseSign = 4,
    /// QSGD: per coordinate, Elias-gamma(level + 1) and a sign bit when level > 0.
    Qsgd = 5,
}

impl Format {
    fn from_id(id: u8) -> Option<Format> {
        Some(match id {
            0 => Format::DenseF32,
            1 => Format::DenseF16,
            2 => Format::SparseSign,
            3 => Format::SparseValues,
            4 => Format::DenseSign,
            5 => Format::Qsgd,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Format::DenseF32 => "dense-f32",
            Format::DenseF16 => "dense-f16",
            Format::SparseSign => "sparse-sign",
            Format::SparseValues => "sparse-values",
            Format::DenseSign => "dense-sign",
            Format::Qsgd => "qsgd",
        }
    }
}

/// The postcard envelope. Field order is the wire order.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    version: u8,
    codec: u8,
    dim: u64,
    /// Entries carried: `dim` for dense formats, sent indices for sparse ones, non-zero levels
    /// for QSGD.
    count: u64,
    /// Golomb parameter (sparse formats) or number of levels (QSGD); 0 otherwise.
    param: u32,
    /// ±magnitude (sparse-sign, dense-sign), ‖v‖₂ (QSGD); 0 otherwise.
    scale: f32,
    #[serde(borrow)]
    payload: &'a [u8],
}

/// What the decoder accepts.
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    /// The only dimension accepted.
    pub expected_dim: usize,
    /// Frames longer than this are rejected before anything is parsed.
    pub max_bytes: usize,
}

impl DecodeLimits {
    /// Limits for `dim`: room for the largest valid frame of any codec at that dimension
    /// (dense f32 plus headroom for sparse values with their gaps and for QSGD), nothing more.
    pub fn for_dim(dim: usize) -> Self {
        DecodeLimits {
            expected_dim: dim,
            max_bytes: dim.saturating_mul(9).div_ceil(2).saturating_add(64),
        }
    }
}

/// Why a frame was rejected; one variant per check.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    /// The frame is longer than the cap (checked before parsing).
    #[error("compressed frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The frame is empty.
    #[error("empty compressed frame")]
    Empty,
    /// The envelope's version is not ours.
    #[error("unsupported compressed-frame version {got} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version in the frame.
        got: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The postcard envelope does not parse (truncated, bad varint, ...).
    #[error("malformed compressed-frame envelope: {0}")]
    Envelope(String),
    /// Bytes after the envelope.
    #[error("{0} trailing bytes after the compressed frame")]
    TrailingBytes(usize),
    /// Unknown codec id.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// The frame's dimension is not the expected one.
    #[error("dimension {got} does not match the expected {expected}")]
    DimensionMismatch {
        /// Expected dimension.
        expected: usize,
        /// Dimension in the frame.
        got: u64,
    },
    /// The entry count is impossible for the format and dimension.
    #[error("entry count {count} is invalid for {format} with dimension {dim}")]
    BadCount {
        /// Format name.
        format: &'static str,
        /// Count in the frame.
        count: u64,
        /// Dimension.
        dim: u64,
    },
    /// The Golomb parameter or the number of levels is out of range.
    #[error("parameter {param} is invalid for {format}")]
    BadParameter {
        /// Format name.
        format: &'static str,
        /// Parameter in the frame.
        param: u32,
    },
    /// A field the format does not use is not zero (frames are canonical).
    #[error("field `{field}` must be zero for {format}")]
    UnusedField {
        /// Format name.
        format: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// The scale is NaN or infinite.
    #[error("scale {0} is not finite")]
    NonFiniteScale(f32),
    /// The payload does not have the length the format and count imply.
    #[error("payload is {got} bytes, {format} needs {expected}")]
    PayloadLength {
        /// Format name.
        format: &'static str,
        /// Needed length.
        expected: u64,
        /// Actual length.
        got: usize,
    },
    /// The index/level bit stream ends inside a code.
    #[error("bit stream truncated after {decoded} of {count} entries")]
    BitstreamTruncated {
        /// Entries decoded before the end.
        decoded: u64,
        /// Entries announced.
        count: u64,
    },
    /// An index at or past the dimension (gaps make indices strictly increasing by
    /// construction, so this is the only index check left).
    #[error("entry {entry} has index at or beyond the dimension {dim}")]
    IndexOutOfRange {
        /// Entry number.
        entry: u64,
        /// Dimension.
        dim: u64,
    },
    /// Bits after the last code that are not zero padding of the final byte.
    #[error("{0} bits of non-zero padding or spare data after the last code")]
    TrailingBits(u64),
    /// A sign bit beyond `count` in the sign bytes is set.
    #[error("padding bits of the sign bytes are not zero")]
    SignPadding,
    /// A value is NaN or infinite.
    #[error("value of entry {0} is not finite")]
    NonFiniteValue(u64),
    /// A QSGD level is above the number of levels.
    #[error("coordinate {index} has level {level} above the {levels} levels")]
    LevelOutOfRange {
        /// Coordinate.
        index: u64,
        /// Level read.
        level: u64,
        /// Number of levels.
        levels: u32,
    },
    /// The QSGD frame's count of non-zero levels is not what the payload holds.
    #[error("frame announces {announced} non-zero levels, payload holds {found}")]
    LevelCountMismatch {
        /// Count in the header.
        announced: u64,
        /// Non-zero levels in the payload.
        found: u64,
    },
}

/// One compressed vector. Build it with a [`crate::Compressor`] or [`Compressed::decode`].
///
/// Invariant: for every `c` with finite values,
/// `Compressed::decode(&c.encode(), &DecodeLimits::for_dim(c.dim())) == Ok(c)`, and `add_to`
/// is deterministic, so every copy built from the same frames is bit-identical.
#[derive(Clone, Debug, PartialEq)]
pub struct Compressed {
    pub(crate) format: Format,
    pub(crate) dim: usize,
    pub(crate) count: usize,
    pub(crate) param: u32,
    pub(crate) scale: f32,
    pub(crate) payload: Vec<u8>,
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

impl Compressed {
    /// Dimension of the vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Entries carried: `dim` for dense codecs, sent coordinates for sparse ones, non-zero
    /// levels for QSGD.
    pub fn nnz(&self) -> usize {
        self.count
    }

    /// How the payload is laid out.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The shared magnitude (sign codecs), ‖v‖₂ (QSGD), 0 for formats without one.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Size of the coded payload in bytes (the envelope adds a few header bytes).
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// `out += alpha * decoded`, straight from the coded payload. Deterministic: the same
    /// message applied to the same `out` gives the same bits everywhere.
    ///
    /// # Panics
    /// If `out.len() != self.dim()` (a caller bug).
    pub fn add_to(&self, out: &mut [f32], alpha: f32) {
        assert_eq!(
            out.len(),
            self.dim,
            "Compressed::add_to: output has {} entries, message has dimension {}",
            out.len(),
            self.dim
        );
        self.for_each_entry(|idx, v| out[idx] += alpha * v);
    }

    /// Calls `f(index, value)` for every entry the message carries, in index order: every
    /// coordinate for the dense codecs, the sent ones for the sparse codecs, the non-zero
    /// levels for QSGD. The cost is in proportion to [`Compressed::nnz`], so a caller can
    /// apply a sparse update to a large vector without touching (or copying) the rest; the
    /// values are exactly those [`Compressed::add_to`] adds with `alpha = 1`.
    pub fn for_each_entry(&self, mut f: impl FnMut(usize, f32)) {
        // The payload was validated (decode) or produced by a compressor, so the walkers
        // cannot fail here; a failure would only stop early.
        let dim = self.dim as u64;
        let count = self.count as u64;
        let p = &self.payload;
        match self.format {
            Format::DenseF32 => {
                for (i, b) in p.chunks_exact(4).take(self.dim).enumerate() {
                    f(i, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            Format::DenseF16 => {
                for (i, b) in p.chunks_exact(2).take(self.dim).enumerate() {
                    f(i, half::f16::from_le_bytes([b[0], b[1]]).to_f32());
                }
            }
            Format::DenseSign => {
                for i in 0..self.dim {
                    let negative = p.get(i / 8).is_some_and(|byte| byte >> (i % 8) & 1 == 1);
                    f(i, if negative { -self.scale } else { self.scale });
                }
            }
            Format::SparseSign => {
                // −scale is scale with the sign bit set: no branch on random signs.
                let pos = self.scale.to_bits();
                let split = self.count.div_ceil(8);
                let (signs, gaps) = p.split_at(split.min(p.len()));
                let _ = walk_gaps(gaps, count, dim, self.param, |k, idx| {
                    let negative = u32::from(signs[k / 8] >> (k % 8) & 1);
                    f(idx, f32::from_bits(pos ^ (negative << 31)));
                });
            }
            Format::SparseValues => {
                let split = self.count * 4;
                let (values, gaps) = p.split_at(split.min(p.len()));
                let _ = walk_gaps(gaps, count, dim, self.param, |k, idx| {
                    let b = &values[4 * k..4 * k + 4];
                    f(idx, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                });
            }
            Format::Qsgd => {
                let unit = qsgd_unit(self.scale, self.param);
                let _ = walk_qsgd(p, dim, self.param, |idx, level, negative| {
                    let v = level as f32 * unit;
                    f(idx, if negative { -v } else { v });
                });
            }
        }
    }

    /// The decoded vector.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.dim];
        self.add_to(&mut v, 1.0);
        v
    }

    /// True when every value the message decodes to is finite.
    pub fn is_finite(&self) -> bool {
        validate(self).is_ok()
    }

    /// The postcard wire frame.
    pub fn encode(&self) -> Vec<u8> {
        let env = Envelope {
            version: FORMAT_VERSION,
            codec: self.format as u8,
            dim: self.dim as u64,
            count: self.count as u64,
            param: self.param,
            scale: self.scale,
            payload: &self.payload,
        };
        let mut out = Vec::with_capacity(self.encoded_len());
        postcard::to_io(&env, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Length of `encode()` without building it.
    pub fn encoded_len(&self) -> usize {
        2 + varint_len(self.dim as u64)
            + varint_len(self.count as u64)
            + varint_len(u64::from(self.param))
            + 4
            + varint_len(self.payload.len() as u64)
            + self.payload.len()
    }

    /// Parses and validates a frame; every check of [`DecodeError`] runs before it returns.
    /// Never panics and never allocates more than a copy of the (size-capped) payload.
    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Compressed, DecodeError> {
        if bytes.len() > limits.max_bytes {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: limits.max_bytes,
            });
        }
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        let (env, rest): (Envelope<'_>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        let format = Format::from_id(env.codec).ok_or(DecodeError::UnknownCodec(env.codec))?;
        if env.dim != limits.expected_dim as u64 {
            return Err(DecodeError::DimensionMismatch {
                expected: limits.expected_dim,
                got: env.dim,
            });
        }
        let dim = env.dim;
        let name = format.name();
        let bad_count = || DecodeError::BadCount {
            format: name,
            count: env.count,
            dim,
        };
        let unused = |field| DecodeError::UnusedField {
            format: name,
            field,
        };
        // Header checks, and the exact payload length where the header fixes it.
        let need = |expected: u64| {
            if env.payload.len() as u64 == expected {
                Ok(())
            } else {
                Err(DecodeError::PayloadLength {
                    format: name,
                    expected,
                    got: env.payload.len(),
                })
            }
        };
        match format {
            Format::DenseF32 | Format::DenseF16 => {
                if env.count != dim {
                    return Err(bad_count());
                }
                if env.param != 0 {
                    return Err(unused("param"));
                }
                if env.scale.to_bits() != 0 {
                    return Err(unused("scale"));
                }
                let width = if format == Format::DenseF32 { 4 } else { 2 };
                need(dim * width)?;
            }
            Format::DenseSign => {
                if env.count != dim {
                    return Err(bad_count());
                }
                if env.param != 0 {
                    return Err(unused("param"));
                }
                need(dim.div_ceil(8))?;
            }
            Format::SparseSign | Format::SparseValues => {
                if env.count > dim {
                    return Err(bad_count());
                }
                if env.param == 0 || env.param > MAX_GOLOMB_M {
                    return Err(DecodeError::BadParameter {
                        format: name,
                        param: env.param,
                    });
                }
                if format == Format::SparseValues && env.scale.to_bits() != 0 {
                    return Err(unused("scale"));
                }
                // Fixed part plus at least one bit per gap code.
                let fixed = if format == Format::SparseSign {
                    env.count.div_ceil(8)
                } else {
                    env.count * 4
                };
                let min = fixed + env.count.div_ceil(8);
                if (env.payload.len() as u64) < min {
                    return Err(DecodeError::PayloadLength {
                        format: name,
                        expected: min,
                        got: env.payload.len(),
                    });
                }
            }
            Format::Qsgd => {
                if env.count > dim {
                    return Err(bad_count());
                }
                if env.param == 0 || env.param > MAX_QSGD_LEVELS {
                    return Err(DecodeError::BadParameter {
                        format: name,
                        param: env.param,
                    });
                }
                // One bit per coordinate at least.
                if (env.payload.len() as u64) < dim.div_ceil(8) {
                    return Err(DecodeError::PayloadLength {
                        format: name,
                        expected: dim.div_ceil(8),
                        got: env.payload.len(),
                    });
                }
            }
        }
        if !env.scale.is_finite() {
            return Err(DecodeError::NonFiniteScale(env.scale));
        }
        let c = Compressed {
            format,
            dim: dim as usize,
            count: env.count as usize,
            param: env.param,
            scale: env.scale,
            payload: env.payload.to_vec(),
        };
        validate(&c)?;
        Ok(c)
    }
}

/// The value of one QSGD level step: ‖v‖₂ / s (one expression, shared by every decoder).
#[inline]
pub(crate) fn qsgd_unit(norm: f32, levels: u32) -> f32 {
    norm / levels as f32
}

/// Full payload validation, after the header checks of `decode`.
fn validate(c: &Compressed) -> Result<(), DecodeError> {
    let dim = c.dim as u64;
    let count = c.count as u64;
    let p = &c.payload;
    match c.format {
        Format::DenseF32 => {
            for (k, b) in p.chunks_exact(4).enumerate() {
                if !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite() {
                    return Err(DecodeError::NonFiniteValue(k as u64));
                }
            }
        }
        Format::DenseF16 => {
            for (k, b) in p.chunks_exact(2).enumerate() {
                if !half::f16::from_le_bytes([b[0], b[1]]).is_finite() {
                    return Err(DecodeError::NonFiniteValue(k as u64));
                }
            }
        }
        Format::DenseSign => {
            if !c.scale.is_finite() {
                return Err(DecodeError::NonFiniteScale(c.scale));
            }
            check_sign_padding(p, count)?;
        }
        Format::SparseSign => {
            if !c.scale.is_finite() {
                return Err(DecodeError::NonFiniteScale(c.scale));
            }
            let split = c.count.div_ceil(8);
            if p.len() < split {
                return Err(DecodeError::PayloadLength {
                    format: c.format.name(),
                    expected: split as u64,
                    got: p.len(),
                });
            }
            let (signs, gaps) = p.split_at(split);
            check_sign_padding(signs, count)?;
            walk_gaps(gaps, count, dim, c.param, |_, _| {})?;
        }
        Format::SparseValues => {
            let split = c.count.saturating_mul(4);
            if p.len() < split {
                return Err(DecodeError::PayloadLength {
                    format: c.format.name(),
                    expected: split as u64,
                    got: p.len(),
                });
            }
            let (values, gaps) = p.split_at(split);
            for (k, b) in values.chunks_exact(4).enumerate() {
                if !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite() {
                    return Err(DecodeError::NonFiniteValue(k as u64));
                }
            }
            walk_gaps(gaps, count, dim, c.param, |_, _| {})?;
        }
        Format::Qsgd => {
            if !c.scale.is_finite() {
                return Err(DecodeError::NonFiniteScale(c.scale));
            }
            let unit = qsgd_unit(c.scale, c.param);
            let mut found = 0u64;
            let mut bad = None;
            walk_qsgd(p, dim, c.param, |idx, level, _| {
                found += 1;
                if bad.is_none() && !(level as f32 * unit).is_finite() {
                    bad = Some(idx as u64);
                }
            })?;
            if found != count {
                return Err(DecodeError::LevelCountMismatch {
                    announced: count,
                    found,
                });
            }
            if let Some(i) = bad {
                return Err(DecodeError::NonFiniteValue(i));
            }
        }
    }
    Ok(())
}

/// Bits at positions ≥ `count` in the sign bytes must be zero.
fn check_sign_padding(signs: &[u8], count: u64) -> Result<(), DecodeError> {
    let used = (count % 8) as u32;
    match signs.last() {
        Some(&last) if used != 0 && last >> used != 0 => Err(DecodeError::SignPadding),
        _ => Ok(()),
    }
}

/// Decodes `count` Golomb-coded gaps into strictly increasing indices below `dim`, calling
/// `f(entry, index)` for each, then checks that only zero padding remains.
#[inline(always)]
pub(crate) fn walk_gaps(
    bits: &[u8],
    count: u64,
    dim: u64,
    m: u32,
    mut f: impl FnMut(usize, usize),
) -> Result<(), DecodeError> {
    let golomb = Golomb::new(m);
    let mut r = BitReader::new(bits);
    let mut next = 0u64;
    // Many entries with short codes: decode most codes with one 12-bit table lookup (no
    // data-dependent branches); the rest, and every error, take the bit-by-bit path.
    let table = if count >= 2048 && golomb.table_pays() {
        golomb.table()
    } else {
        Vec::new()
    };
    let mask = (1u64 << Golomb::TABLE_BITS) - 1;
    let mut k = 0u64;
    while k < count {
        // Several table codes from one 64-bit load while ≥ TABLE_BITS of its bits are
        // unread: the chain per code is a table load and a shift, not a reload of the stream
        // at the new position. Same checks, in the same order, as the one-code path below.
        if !table.is_empty()
            && let Some((mut w, valid)) = r.full_window()
        {
            let mut used = 0u32;
            while used + Golomb::TABLE_BITS <= valid && k < count {
                let e = table[(w & mask) as usize];
                if e == 0 {
                    break;
                }
                if next >= dim {
                    return Err(DecodeError::IndexOutOfRange { entry: k, dim });
                }
                let g = u64::from(e >> 4);
                if g > dim - 1 - next {
                    return Err(DecodeError::IndexOutOfRange { entry: k, dim });
                }
                let idx = next + g;
                f(k as usize, idx as usize);
                next = idx + 1;
                k += 1;
                w >>= e & 15;
                used += e & 15;
            }
            r.skip(used);
            if used > 0 {
                continue;
            }
        }
        if next >= dim {
            return Err(DecodeError::IndexOutOfRange { entry: k, dim });
        }
        // The gap may take the index to dim − 1 at most.
        let max = dim - 1 - next;
        let e = match table.get((r.peek() & mask) as usize) {
            Some(&e) => e,
            None => 0,
        };
        let g = if e != 0 {
            r.advance(e & 15)
                .map_err(|err| bit_err(err, k, count, dim))?;
            let g = u64::from(e >> 4);
            if g > max {
                return Err(DecodeError::IndexOutOfRange { entry: k, dim });
            }
            g
        } else {
            golomb
                .get(&mut r, max)
                .map_err(|err| bit_err(err, k, count, dim))?
        };
        let idx = next + g;
        f(k as usize, idx as usize);
        next = idx + 1;
        k += 1;
    }
    if !r.at_clean_end() {
        return Err(DecodeError::TrailingBits(
            bits.len() as u64 * 8 - r.position(),
        ));
    }
    Ok(())
}

/// Decodes a QSGD payload: for each of `dim` coordinates a level ≤ `levels`; calls
/// `f(index, level, negative)` for non-zero levels, then checks the padding.
#[inline(always)]
pub(crate) fn walk_qsgd(
    bits: &[u8],
    dim: u64,
    levels: u32,
    mut f: impl FnMut(usize, u64, bool),
) -> Result<(), DecodeError> {
    let mut r = BitReader::new(bits);
    let max = u64::from(levels) + 1;
    for i in 0..dim {
        let n = get_gamma(&mut r, max).map_err(|e| match e {
            BitError::Truncated => DecodeError::BitstreamTruncated {
                decoded: i,
                count: dim,
            },
            BitError::Overlong => DecodeError::LevelOutOfRange {
                index: i,
                level: max,
                levels,
            },
        })?;
        let level = n - 1;
        if level > 0 {
            let negative = r.get(1).map_err(|_| DecodeError::BitstreamTruncated {
                decoded: i,
                count: dim,
            })? == 1;
            f(i as usize, level, negative);
        }
    }
    if !r.at_clean_end() {
        return Err(DecodeError::TrailingBits(
            bits.len() as u64 * 8 - r.position(),
        ));
    }
    Ok(())
}

fn bit_err(e: BitError, decoded: u64, count: u64, dim: u64) -> DecodeError {
    match e {
        BitError::Truncated => DecodeError::BitstreamTruncated { decoded, count },
        BitError::Overlong => DecodeError::IndexOutOfRange {
            entry: decoded,
            dim,
        },
    }
}
