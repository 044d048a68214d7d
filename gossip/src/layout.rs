//! Where each named tensor of a model lives in the flat parameter vector: what checkpoints
//! write as separate named tensors (`conv1.weight` `[8, 1, 5, 5]`, ...) so that a reader in
//! another language loads layers without knowing murmur's flat order.

/// One tensor of a model: its name, shape and place in the flat vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// Dotted name, e.g. `conv1.weight`, `blocks.0.attn.qkv.bias`.
    pub name: String,
    /// Shape in candle's (and PyTorch's) native order: convolution weights
    /// `[out, in, kh, kw]`, linear weights `[out, in]`, embeddings `[rows, width]`.
    pub shape: Vec<usize>,
    /// Index of the tensor's first entry in the flat vector.
    pub offset: usize,
    /// Number of entries (the product of `shape`).
    pub len: usize,
}

impl ParamEntry {
    /// The tensor's range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Where a model's tensors lie in the one flat `f32` vector that gossip, compression,
/// averaging and checkpoints see: each tensor contiguous in row-major order of its
/// [`ParamEntry::shape`], one after another with no gaps; [`ParamLayout::dim`] is the total.
///
/// Deep models use the canonical order of [`ParamLayout::new`]: tensors sorted by name
/// (byte-wise, so `blocks.10` sorts before `blocks.2`). The analytic-gradient models keep
/// their historical order (layer after layer, weight then bias) through
/// [`ParamLayout::in_order`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    dim: usize,
}

impl ParamLayout {
    /// Lays out `tensors` (name and shape, in any order) sorted by name. Panics on a repeated
    /// name: a model that names two tensors alike is a bug.
    pub fn new(tensors: Vec<(String, Vec<usize>)>) -> ParamLayout {
        let mut tensors = tensors;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        ParamLayout::in_order(tensors)
    }

    /// Lays out `tensors` in the order given. Panics on a repeated name.
    pub fn in_order(tensors: Vec<(String, Vec<usize>)>) -> ParamLayout {
        let mut names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
        names.sort_unstable();
        assert!(
            names.windows(2).all(|w| w[0] != w[1]),
            "repeated parameter name"
        );
        let mut offset = 0;
        let entries = tensors
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let entry = ParamEntry {
                    name,
                    shape,
                    offset,
                    len,
                };
                offset += len;
                entry
            })
            .collect();
        ParamLayout {
            entries,
            dim: offset,
        }
    }

    /// Length of the flat vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The tensors in flat-vector order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Position of the tensor called `name` in [`ParamLayout::entries`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        // A linear scan: models have tens of tensors, and `in_order` layouts are not sorted.
        self.entries.iter().position(|e| e.name == name)
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.index_of(name).map(|i| &self.entries[i])
    }

    /// The slice of `flat` holding the tensor called `name`. Panics if there is none or `flat`
    /// is shorter than [`ParamLayout::dim`].
    pub fn slice<'a>(&self, flat: &'a [f32], name: &str) -> &'a [f32] {
        let e = self
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        &flat[e.range()]
    }
}
