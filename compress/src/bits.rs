//! LSB-first bit streams and the prefix codes built on them: Golomb codes (unary quotient,
//! truncated-binary remainder) for index gaps and Elias-gamma codes for QSGD levels.
//!
//! Bit `i` of the stream is bit `i % 8` of byte `i / 8`. Unary runs are zeros closed by a one,
//! so a reader finds them with `trailing_zeros` on a 64-bit window.

/// Appends bits to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    /// Bits pending in `acc` (always < 32 between calls).
    nbits: u32,
}

impl BitWriter {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(bytes),
            acc: 0,
            nbits: 0,
        }
    }

    /// Writes the low `n` bits of `value` (n ≤ 32; higher bits of `value` must be zero).
    #[inline(always)]
    pub(crate) fn put(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 32 && value >> n == 0);
        self.acc |= value << self.nbits;
        self.nbits += n;
        if self.nbits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.nbits -= 32;
        }
    }

    /// Writes the low `n ≤ 64` bits of `value`.
    pub(crate) fn put_long(&mut self, value: u64, n: u32) {
        if n > 32 {
            self.put(value & 0xffff_ffff, 32);
            self.put(value >> 32, n - 32);
        } else {
            self.put(value, n);
        }
    }

    /// Writes `q` zeros and a closing one.
    #[inline(always)]
    pub(crate) fn put_unary(&mut self, mut q: u64) {
        while q >= 32 {
            self.put(0, 32);
            q -= 32;
        }
        self.put(1 << q, q as u32 + 1);
    }

    /// Pads the last byte with zero bits and returns the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let bytes = self.nbits.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.out
    }
}

/// Where Golomb codes go: the growing [`BitWriter`] or the pre-sized [`SlackBits`].
trait BitSink {
    /// Writes the low `n ≤ 32` bits of `value` (higher bits zero).
    fn put(&mut self, value: u64, n: u32);
}

impl BitSink for BitWriter {
    #[inline(always)]
    fn put(&mut self, value: u64, n: u32) {
        BitWriter::put(self, value, n);
    }
}

impl BitSink for SlackBits<'_> {
    #[inline(always)]
    fn put(&mut self, value: u64, n: u32) {
        SlackBits::put(self, value, n);
    }
}

/// Bit writer into a slice sized in advance, without a flush branch: every write stores the
/// whole 64-bit accumulator at the current byte and advances by the completed bytes, so nothing
/// depends on "are 32 bits pending?", which mispredicted every few codes of a dense gap stream.
/// Lives only as locals of one loop so that its fields stay in registers.
struct SlackBits<'a> {
    buf: &'a mut [u8],
    /// Byte holding the next bit.
    pos: usize,
    /// Pending bits (fewer than 8 between calls), already stored at `buf[pos]`.
    acc: u64,
    nbits: u32,
}

impl SlackBits<'_> {
    /// Writes the low `n ≤ 32` bits of `value` (higher bits zero). Needs 8 bytes of room.
    #[inline(always)]
    fn put(&mut self, value: u64, n: u32) {
        (self.acc, self.nbits, self.pos) =
            write_code(self.buf, (self.acc, self.nbits, self.pos), value, n);
    }
}

/// One step of the flush-free writer on state `(acc, nbits, pos)` passed by value (so that a
/// hot loop keeps it in registers): appends the low `len` bits of `code` (higher bits zero;
/// `nbits + len ≤ 64`), stores the whole accumulator at byte `pos` (8 bytes of room needed)
/// and advances by the completed bytes, leaving < 8 bits pending.
#[inline(always)]
fn write_code(buf: &mut [u8], state: (u64, u32, usize), code: u64, len: u32) -> (u64, u32, usize) {
    let (mut acc, mut nbits, mut pos) = state;
    acc |= code << nbits;
    nbits += len;
    buf[pos..pos + 8].copy_from_slice(&acc.to_le_bytes());
    let done = nbits >> 3;
    pos += done as usize;
    acc >>= done * 8;
    (acc, nbits & 7, pos)
}

/// Packs runs of bits into 64-bit words, LSB first, without a branch on word boundaries: the
/// current word lives in a register and is stored, with whatever spills into the next word,
/// after every run. A value on the stack of the loop that uses it, so its state stays in
/// registers.
#[derive(Debug)]
pub(crate) struct SignPacker<'a> {
    /// Finished words, the current one, and one word of room.
    words: &'a mut [u64],
    /// Index of the current word.
    at: usize,
    /// Bits in the current word (< 64).
    nbits: u32,
    acc: u64,
}

impl<'a> SignPacker<'a> {
    /// A packer for up to `max_bits` bits into `store` (grown as needed; old contents need no
    /// clearing, since every word is stored before it is read).
    pub(crate) fn new(store: &'a mut Vec<u64>, max_bits: usize) -> Self {
        let room = max_bits / 64 + 2;
        if store.len() < room {
            store.resize(room, 0);
        }
        SignPacker {
            words: store.as_mut_slice(),
            at: 0,
            nbits: 0,
            acc: 0,
        }
    }

    /// Appends the low `k ≤ 64` bits of `s` (higher bits zero).
    #[inline(always)]
    pub(crate) fn append(&mut self, s: u64, k: u32) {
        let n = self.nbits;
        let current = self.acc | (s << n);
        // The bits that spill into the next word: s >> (64 − n), and nothing when n = 0.
        let spill = (s >> 1) >> (63 - n);
        self.words[self.at] = current;
        self.words[self.at + 1] = spill;
        let t = n + k;
        let full = t >> 6;
        self.acc = if full == 1 { spill } else { current };
        self.at += full as usize;
        self.nbits = t & 63;
    }

    /// The packed words (the last one zero-padded).
    pub(crate) fn words(&self) -> &[u64] {
        &self.words[..self.at + usize::from(self.nbits > 0)]
    }
}

/// Writes the gaps before the set bits j of `hit` (non-zero; positions base + j, the first gap
/// counted from `next`, the position after the previous hit, which is then advanced) to `out`
/// in order and returns their signs packed (bit i for the i-th hit) and their number. With
/// `PACKED`, `sign` is already packed; otherwise bit j of `sign` is the sign of position
/// base + j. `SLOTS` unconditional slots come first (a slot past the last hit writes garbage
/// that the next word overwrites, and its sign bit is masked off), then a loop for any hits
/// left: with as many slots as a word usually has hits, no branch depends on the word, while a
/// loop over its bits would mispredict its exit once per word.
#[inline(always)]
pub(crate) fn expand_word<const SLOTS: usize, const PACKED: bool>(
    base: u32,
    hit: u64,
    sign: u64,
    next: &mut u32,
    out: &mut [u32; 64],
) -> (u64, u32) {
    let k = hit.count_ones();
    let mut h = hit;
    let mut packed = 0u64;
    // Gaps in u32 wrapping arithmetic relative to base: the previous hit at j = next − 1 − base
    // (below zero for the first word's hits, which wraps back in the subtraction).
    let mut prev = next.wrapping_sub(base).wrapping_sub(1);
    for (s, slot) in out.iter_mut().enumerate().take(SLOTS) {
        // An empty h gives j = 64: a garbage slot, its sign bit masked off below.
        let j = h.trailing_zeros();
        *slot = j.wrapping_sub(prev).wrapping_sub(1);
        prev = j;
        if !PACKED {
            packed |= ((sign >> (j & 63)) & 1) << s;
        }
        h &= h.wrapping_sub(1);
    }
    let mut i = SLOTS;
    while h != 0 {
        let j = h.trailing_zeros();
        out[i] = j.wrapping_sub(prev).wrapping_sub(1);
        prev = j;
        if !PACKED {
            packed |= ((sign >> j) & 1) << i;
        }
        h &= h - 1;
        i += 1;
    }
    *next = base + 64 - hit.leading_zeros();
    let packed = if PACKED {
        sign
    } else {
        packed & u64::MAX.checked_shr(64 - k).unwrap_or(0)
    };
    (packed, k)
}

/// Why a bit stream is not a valid code sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitError {
    /// A code runs past the end of the stream.
    Truncated,
    /// A code's value is out of range for the parameter (e.g. too long a unary run).
    Overlong,
}

/// Reads bits from a byte slice; never panics, reading past the end yields `Truncated`.
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit position.
    pos: u64,
    len_bits: u64,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            len_bits: bytes.len() as u64 * 8,
        }
    }

    /// The next 57+ bits starting at `pos` (zeros past the end).
    #[inline(always)]
    fn window(&self) -> u64 {
        let byte = (self.pos / 8) as usize;
        let shift = (self.pos % 8) as u32;
        let word = match self.bytes.get(byte..byte + 8) {
            Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
            None => {
                let mut buf = [0u8; 8];
                if let Some(tail) = self.bytes.get(byte..) {
                    buf[..tail.len()].copy_from_slice(tail);
                }
                u64::from_le_bytes(buf)
            }
        };
        word >> shift
    }

    /// Reads `n` ≤ 56 bits.
    #[inline(always)]
    pub(crate) fn get(&mut self, n: u32) -> Result<u64, BitError> {
        if self.pos + u64::from(n) > self.len_bits {
            return Err(BitError::Truncated);
        }
        let v = if n == 0 {
            0
        } else {
            self.window() & (u64::MAX >> (64 - n))
        };
        self.pos += u64::from(n);
        Ok(v)
    }

    /// Reads a unary run (zeros closed by a one); fails if it exceeds `max`.
    #[inline(always)]
    pub(crate) fn get_unary(&mut self, max: u64) -> Result<u64, BitError> {
        let mut q = 0u64;
        loop {
            let w = self.window();
            let tz = u64::from(w.trailing_zeros());
            if tz < 56 {
                q += tz;
                self.pos += tz + 1;
                if self.pos > self.len_bits {
                    return Err(BitError::Truncated);
                }
                if q > max {
                    return Err(BitError::Overlong);
                }
                return Ok(q);
            }
            q += 56;
            self.pos += 56;
            if self.pos >= self.len_bits {
                return Err(BitError::Truncated);
            }
            if q > max {
                return Err(BitError::Overlong);
            }
        }
    }

    /// The next bits without consuming them (zeros past the end).
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        self.window()
    }

    /// The next `n` ≥ 57 bits as `(bits, n)` when the 8 bytes holding them are all in the
    /// stream (no end to handle), for decoding several short codes from one load.
    #[inline(always)]
    pub(crate) fn full_window(&self) -> Option<(u64, u32)> {
        let byte = (self.pos / 8) as usize;
        let shift = (self.pos % 8) as u32;
        let s = self.bytes.get(byte..byte + 8)?;
        let word = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        Some((word >> shift, 64 - shift))
    }

    /// Consumes `n` bits taken from [`BitReader::full_window`] (so they are in the stream).
    #[inline(always)]
    pub(crate) fn skip(&mut self, n: u32) {
        self.pos += u64::from(n);
        debug_assert!(self.pos <= self.len_bits);
    }

    /// Consumes `n` bits already inspected with `peek`.
    #[inline(always)]
    pub(crate) fn advance(&mut self, n: u32) -> Result<(), BitError> {
        self.pos += u64::from(n);
        if self.pos > self.len_bits {
            return Err(BitError::Truncated);
        }
        Ok(())
    }

    /// Bits consumed so far.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// True when the rest of the stream is zero padding inside the last byte.
    pub(crate) fn at_clean_end(&self) -> bool {
        if self.len_bits - self.pos >= 8 {
            return false;
        }
        self.pos == self.len_bits || self.window() == 0
    }
}

/// Golomb code with parameter `m ≥ 1`: quotient in unary, remainder in truncated binary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Golomb {
    m: u64,
    /// floor(2^64 / m) + 1: q = (recip · g) >> 64 for every 32-bit g (Lemire et al. 2019).
    recip: u64,
    /// ceil(log2 m).
    b: u32,
    /// 2^b − m: remainders below this take b − 1 bits.
    u: u64,
}

impl Golomb {
    pub(crate) fn new(m: u32) -> Self {
        let m = u64::from(m.max(1));
        let b = 64 - (m - 1).leading_zeros();
        let b = if m == 1 { 0 } else { b };
        let recip = if m == 1 { 0 } else { u64::MAX / m + 1 };
        Golomb {
            m,
            recip,
            b,
            u: (1u64 << b) - m,
        }
    }

    /// The optimal parameter for geometric gaps with success probability `p` (Gallager and
    /// Van Voorhis 1975): the smallest m with (1−p)^m + (1−p)^(m+1) ≤ 1.
    pub(crate) fn parameter_for_density(p: f64) -> u32 {
        if !(p > 0.0 && p < 1.0) {
            return 1;
        }
        let m = ((2.0 - p).ln() / -(1.0 - p).ln()).ceil();
        m.clamp(1.0, f64::from(MAX_GOLOMB_M)) as u32
    }

    /// Quotient and remainder of `g`.
    #[inline(always)]
    fn split(&self, g: u64) -> (u64, u64) {
        if self.m == 1 {
            (g, 0)
        } else if g <= u64::from(u32::MAX) {
            let q = ((u128::from(self.recip) * u128::from(g)) >> 64) as u64;
            (q, g - q * self.m)
        } else {
            (g / self.m, g % self.m)
        }
    }

    /// The code of `g` as `(bits, length)` when it fits in 32 bits — all but the rare huge
    /// gaps. The truncated-binary choice (r < u: b − 1 bits, else b) is close to a coin flip,
    /// so it is computed with selects rather than a branch that would mispredict every other
    /// entry.
    #[inline(always)]
    fn short_code(&self, q: u64, r: u64) -> Option<(u64, u32)> {
        if q + u64::from(self.b) >= 32 {
            return None;
        }
        if self.b == 0 {
            return Some((1 << q, q as u32 + 1));
        }
        let long = r >= self.u;
        let x = r + self.u;
        let wide = (x >> 1) | ((x & 1) << (self.b - 1));
        let code = if long { wide } else { r };
        let n = self.b - 1 + u32::from(long);
        Some(((1 << q) | (code << (q + 1)), q as u32 + 1 + n))
    }

    /// Writes the code of `g`.
    #[inline(always)]
    pub(crate) fn put(&self, w: &mut BitWriter, g: u64) {
        self.put_into(w, g);
    }

    /// The codes of the gaps between increasing `indices` (the first from 0).
    pub(crate) fn put_index_gaps(&self, w: &mut BitWriter, indices: &[usize]) {
        let mut next = 0usize;
        for &i in indices {
            self.put(w, (i - next) as u64);
            next = i + 1;
        }
    }

    /// The code of `g` into either writer: one `put` for the common short codes, else the
    /// unary run 32 zeros at a time and the remainder.
    #[inline(always)]
    fn put_into(&self, w: &mut impl BitSink, g: u64) {
        let (q, r) = self.split(g);
        if let Some((code, n)) = self.short_code(q, r) {
            w.put(code, n);
            return;
        }
        let mut q = q;
        while q >= 32 {
            w.put(0, 32);
            q -= 32;
        }
        w.put(1 << q, q as u32 + 1);
        if self.b > 0 {
            if r < self.u {
                w.put(r, self.b - 1);
            } else {
                let x = r + self.u;
                w.put(x >> 1, self.b - 1);
                w.put(x & 1, 1);
            }
        }
    }

    /// Codes `gaps` with the codes of `table` or computed ones; the writer state
    /// `(acc, nbits, pos)` goes in and comes out by value and the loop runs apart from the
    /// expansion loop of pass 1: fused with it, the accumulator and bit count were spilled to
    /// the stack, adding a store-to-load forward to the chain of every entry. Inlined into
    /// each build of the encoder.
    ///
    /// `G` table codes are joined before they meet the writer (`G` codes of at most
    /// `table_bits` each plus the < 8 pending bits fit in 64), which divides the writer's work
    /// and its serial chain by `G`; a group with a gap outside the table goes one by one.
    #[inline(always)]
    fn put_gap_codes<const G: usize>(
        &self,
        gaps: &[u32],
        table: &[u64],
        buf: &mut [u8],
        state: (u64, u32, usize),
    ) -> (u64, u32, usize) {
        let (mut acc, mut nbits, mut pos) = state;
        let mut groups = gaps.chunks_exact(G);
        for group in &mut groups {
            let mut code = 0u64;
            let mut len = 0u32;
            let mut all_in_table = true;
            for &g in group {
                match table.get(g as usize) {
                    Some(&e) => {
                        code |= (e & 0xffff_ffff) << len;
                        len += (e >> 32) as u32;
                    }
                    None => all_in_table = false,
                }
            }
            if all_in_table {
                (acc, nbits, pos) = write_code(buf, (acc, nbits, pos), code, len);
            } else {
                (acc, nbits, pos) = self.put_one_by_one(group, table, buf, (acc, nbits, pos));
            }
        }
        self.put_one_by_one(groups.remainder(), table, buf, (acc, nbits, pos))
    }

    /// [`Golomb::put_gap_codes`] one code at a time.
    #[inline(never)]
    fn put_one_by_one(
        &self,
        gaps: &[u32],
        table: &[u64],
        buf: &mut [u8],
        state: (u64, u32, usize),
    ) -> (u64, u32, usize) {
        let (mut acc, mut nbits, mut pos) = state;
        for &g in gaps {
            let (code, len) = match table.get(g as usize) {
                Some(&e) => (e & 0xffff_ffff, (e >> 32) as u32),
                None => {
                    (acc, nbits, pos) = self.put_uncommon(buf, acc, nbits, pos, u64::from(g));
                    continue;
                }
            };
            (acc, nbits, pos) = write_code(buf, (acc, nbits, pos), code, len);
        }
        (acc, nbits, pos)
    }

    /// [`Golomb::put`] for a code the table does not hold, on writer state passed by
    /// value so that the hot loop keeps its state in registers.
    #[cold]
    #[inline(never)]
    fn put_uncommon(
        &self,
        buf: &mut [u8],
        acc: u64,
        nbits: u32,
        pos: usize,
        g: u64,
    ) -> (u64, u32, usize) {
        let mut w = SlackBits {
            buf,
            pos,
            acc,
            nbits,
        };
        self.put_into(&mut w, g);
        (w.acc, w.nbits, w.pos)
    }

    /// Codes `gaps` (those between increasing positions < `dim` < 2^32, so Σgaps < dim),
    /// appending to `out` exactly the bytes [`Golomb::put`] into a fresh [`BitWriter`] would
    /// give. Room is sized once from the bound Σq ≤ dim/m, so the code stream takes at most
    /// dim/m + count·(b + 1) bits, and the writer never checks for a flush.
    // Inlined so that each build of the encoder compiles the coding loop for its instructions
    // (BMI2's flag-free shifts on the writer's chain).
    #[inline(always)]
    pub(crate) fn put_gaps(&self, gaps: &[u32], dim: usize, mut out: Vec<u8>) -> Vec<u8> {
        debug_assert!((dim as u64) < 1 << 32);
        let count = gaps.len();
        let start = out.len();
        let bound_bits = dim as u64 / self.m + count as u64 * (u64::from(self.b) + 1);
        out.resize(start + (bound_bits / 8) as usize + 16, 0);
        let golomb = *self;
        // Codes of the common small gaps, `(length << 32) | bits`, when there are enough
        // entries to pay for building it: gaps ≥ 8m have probability ≈ 2^-8, and every code in
        // the table fits in 32 bits (q + b < 32).
        let span = (golomb.m * u64::from(32 - golomb.b))
            .min(8 * golomb.m)
            .min(2048) as usize;
        let table: Vec<u64> = if count >= 4 * span {
            (0..span as u64)
                .map(|g| {
                    let (q, r) = golomb.split(g);
                    let (code, n) = golomb.short_code(q, r).expect("q + b < 32 in the table");
                    (u64::from(n) << 32) | code
                })
                .collect()
        } else {
            Vec::new()
        };
        // How many table codes fit one writer step: the longest is q + 1 + b bits with
        // q < span/m, and the writer holds < 8 pending bits of 64.
        let table_bits = (span as u64).div_ceil(golomb.m) as u32 + golomb.b;
        let group = if table.is_empty() { 1 } else { 57 / table_bits };
        let buf = &mut out[start..];
        let state = (0, 0, 0);
        let (_, nbits, pos) = match group {
            1 => golomb.put_one_by_one(gaps, &table, buf, state),
            2 => golomb.put_gap_codes::<2>(gaps, &table, buf, state),
            3 => golomb.put_gap_codes::<3>(gaps, &table, buf, state),
            4 => golomb.put_gap_codes::<4>(gaps, &table, buf, state),
            _ => golomb.put_gap_codes::<5>(gaps, &table, buf, state),
        };
        out.truncate(start + pos + usize::from(nbits > 0));
        out
    }

    /// Reads one value; fails when the stream ends or the value would exceed `max`.
    #[inline(always)]
    pub(crate) fn get(&self, r: &mut BitReader<'_>, max: u64) -> Result<u64, BitError> {
        let q = r.get_unary(max / self.m)?;
        if self.b == 0 {
            return Ok(q);
        }
        let v = r.get(self.b - 1)?;
        let rem = if v < self.u {
            v
        } else {
            ((v << 1) | r.get(1)?) - self.u
        };
        let g = q * self.m + rem;
        if g > max {
            return Err(BitError::Overlong);
        }
        Ok(g)
    }
}

impl Golomb {
    /// Bits of the lookup-table index used by [`GolombTable`].
    pub(crate) const TABLE_BITS: u32 = 12;

    /// Whether a lookup table decodes most codes of this parameter (short codes exist).
    pub(crate) fn table_pays(&self) -> bool {
        self.b < Self::TABLE_BITS
    }

    /// Lookup table: for each 12-bit window, `(gap << 4) | length` of the code it starts with
    /// when that code fits in 12 bits, else 0.
    pub(crate) fn table(&self) -> Vec<u32> {
        let tb = Self::TABLE_BITS;
        let mut t = vec![0u32; 1 << tb];
        for q in 0..u64::from(tb) {
            for r in 0..self.m {
                let (code, n) = if self.b == 0 {
                    (0, 0)
                } else if r < self.u {
                    (r, self.b - 1)
                } else {
                    let x = r + self.u;
                    ((x >> 1) | ((x & 1) << (self.b - 1)), self.b)
                };
                let len = q as u32 + 1 + n;
                if len > tb {
                    break;
                }
                let value = (1u64 << q) | (code << (q + 1));
                let g = q * self.m + r;
                for hi in 0..(1u64 << (tb - len)) {
                    t[(value | (hi << len)) as usize] = ((g as u32) << 4) | len;
                }
            }
        }
        t
    }
}

/// Largest Golomb parameter accepted on the wire (2^31: any gap fits a 32-bit dimension).
pub(crate) const MAX_GOLOMB_M: u32 = 1 << 31;

/// Elias-gamma code of `n ≥ 1`: floor(log2 n) in unary, then the bits below the leading one.
#[inline(always)]
pub(crate) fn put_gamma(w: &mut BitWriter, n: u64) {
    debug_assert!(n >= 1);
    let nb = 63 - n.leading_zeros();
    w.put_unary(u64::from(nb));
    if nb > 0 {
        w.put_long(n & ((1u64 << nb) - 1), nb);
    }
}

/// Reads an Elias-gamma code whose value may not exceed `max` (< 2^56).
#[inline(always)]
pub(crate) fn get_gamma(r: &mut BitReader<'_>, max: u64) -> Result<u64, BitError> {
    let max_nb = 63 - u64::from(max.max(1).leading_zeros());
    let nb = r.get_unary(max_nb)? as u32;
    let low = r.get(nb)?;
    let n = (1u64 << nb) | low;
    if n > max {
        return Err(BitError::Overlong);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golomb_round_trips_for_many_parameters() {
        for m in [1u32, 2, 3, 5, 7, 8, 69, 100, 693, 1 << 20] {
            let g = Golomb::new(m);
            let mut w = BitWriter::default();
            let vals: Vec<u64> = (0..500).map(|i| (i * i * 7 + i) % 5000).collect();
            for &v in &vals {
                g.put(&mut w, v);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for &v in &vals {
                assert_eq!(g.get(&mut r, 1 << 40).unwrap(), v, "m={m}");
            }
            assert!(r.at_clean_end());
        }
    }

    /// Hit words expanded to gaps (with 0 and 8 unconditional slots, signs packed here or by
    /// the caller) and coded by `put_gaps` give exactly what `Golomb::put` into a `BitWriter`
    /// writes, with and without the gap table and for every group size, for long unary runs
    /// (q ≥ 32) and m = 1; the signs come out packed in order.
    #[test]
    fn expanded_hit_words_match_the_plain_writer() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (m, words, density_shift) in [
            (1u32, 40usize, 0u32),
            (2, 300, 1),
            (7, 2000, 2),
            (69, 3000, 5),
            (693, 500, 9),
            (3, 600, 12),
            (16, 2000, 3),
        ] {
            let dim = 64 * words;
            let mut hits = Vec::new();
            let mut want_signs = Vec::new();
            let mut positions = Vec::new();
            for k in 0..words {
                // Sparser words for larger shifts; some empty stretches give q ≥ 32.
                let mut h = rand();
                for _ in 0..density_shift {
                    h &= rand();
                }
                if k % 97 < 40 && density_shift > 0 {
                    h = 0;
                }
                if h != 0 {
                    let sign = rand();
                    hits.push((64 * k as u32, h, sign));
                    let mut x = h;
                    while x != 0 {
                        let j = x.trailing_zeros();
                        positions.push(64 * k as u64 + u64::from(j));
                        want_signs.push((sign >> j) & 1);
                        x &= x - 1;
                    }
                }
            }
            let g = Golomb::new(m);
            let mut w = BitWriter::default();
            w.put(0b101, 3);
            let prefix = w.finish();
            let mut w = BitWriter::default();
            let mut next = 0;
            for &p in &positions {
                g.put(&mut w, p - next);
                next = p + 1;
            }
            let mut want = prefix.clone();
            want.extend_from_slice(&w.finish());
            for (slots, packed_by_caller) in [(0, false), (8, false), (8, true), (0, true)] {
                let mut gaps = vec![0u32; positions.len() + 64];
                let mut store = Vec::new();
                let mut signs = SignPacker::new(&mut store, dim);
                let (mut n, mut next) = (0usize, 0u32);
                for &(base, hit, sign) in &hits {
                    let sign = if packed_by_caller {
                        // Software pext of the sign word by the hit word.
                        let (mut x, mut p, mut i) = (hit, 0u64, 0);
                        while x != 0 {
                            p |= ((sign >> x.trailing_zeros()) & 1) << i;
                            i += 1;
                            x &= x - 1;
                        }
                        p
                    } else {
                        sign
                    };
                    let out: &mut [u32; 64] = (&mut gaps[n..n + 64]).try_into().unwrap();
                    let (packed, k) = match (slots, packed_by_caller) {
                        (0, false) => expand_word::<0, false>(base, hit, sign, &mut next, out),
                        (_, false) => expand_word::<8, false>(base, hit, sign, &mut next, out),
                        (0, true) => expand_word::<0, true>(base, hit, sign, &mut next, out),
                        (_, true) => expand_word::<8, true>(base, hit, sign, &mut next, out),
                    };
                    signs.append(packed, k);
                    n += k as usize;
                }
                assert_eq!(n, positions.len());
                let got = g.put_gaps(&gaps[..n], dim, prefix.clone());
                assert_eq!(got, want, "m={m} slots={slots}");
                let words = signs.words();
                let unpacked: Vec<u64> = (0..n).map(|i| (words[i / 64] >> (i % 64)) & 1).collect();
                assert_eq!(unpacked, want_signs, "m={m}");
                assert_eq!(words.len(), n.div_ceil(64));
                // Bits past the last sign are zero.
                if n % 64 != 0 {
                    assert_eq!(words[n / 64] >> (n % 64), 0);
                }
            }
        }
    }

    #[test]
    fn gamma_round_trips() {
        let mut w = BitWriter::default();
        let vals: Vec<u64> = (1..3000).chain([1 << 20, (1 << 34) - 1]).collect();
        for &v in &vals {
            put_gamma(&mut w, v);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for &v in &vals {
            assert_eq!(get_gamma(&mut r, 1 << 40).unwrap(), v);
        }
        assert!(r.at_clean_end());
    }

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let mut r = BitReader::new(&[0u8; 3]);
        assert_eq!(r.get_unary(1000), Err(BitError::Truncated));
        let mut r = BitReader::new(&[]);
        assert_eq!(r.get(1), Err(BitError::Truncated));
    }

    #[test]
    fn optimal_parameter_matches_known_values() {
        assert_eq!(Golomb::parameter_for_density(0.5), 1);
        assert_eq!(Golomb::parameter_for_density(0.1), 7);
        assert_eq!(Golomb::parameter_for_density(0.01), 69);
    }
}
