//! Character-level text for language models: the byte vocabulary, the split by position,
//! per-peer shards, seeded random windows and the unigram baseline.
//!
//! A corpus is a sequence of token ids, one per byte of the text; the vocabulary is the set of
//! distinct bytes of the text, sorted, so id `i` is the `i`-th smallest byte and a corpus of
//! plain ASCII has at most 128 ids. Training reads windows of `context + 1` consecutive tokens
//! (the model predicts tokens 1..=context from the ones before them).

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DataError;

/// Token ids of a text over a byte vocabulary (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextCorpus {
    vocab: Arc<[u8]>,
    tokens: Arc<[u8]>,
}

impl TextCorpus {
    /// Tokenises `text` with its own vocabulary (its distinct bytes, sorted). Refuses an empty
    /// text.
    pub fn from_bytes(text: &[u8]) -> Result<TextCorpus, DataError> {
        if text.is_empty() {
            return Err(DataError::Shape("the text is empty".into()));
        }
        let mut seen = [false; 256];
        for &b in text {
            seen[usize::from(b)] = true;
        }
        let vocab: Vec<u8> = (0..=255u8).filter(|&b| seen[usize::from(b)]).collect();
        let mut id = [0u8; 256];
        for (i, &b) in vocab.iter().enumerate() {
            // At most 256 distinct bytes, so every id fits in a byte.
            id[usize::from(b)] = i as u8;
        }
        Ok(TextCorpus {
            tokens: text.iter().map(|&b| id[usize::from(b)]).collect(),
            vocab: vocab.into(),
        })
    }

    /// Number of tokens (bytes of text).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the corpus has no tokens (only a shard can be empty).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Size of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The byte each id stands for (sorted ascending).
    pub fn vocab(&self) -> &[u8] {
        &self.vocab
    }

    /// The token ids.
    pub fn tokens(&self) -> &[u8] {
        &self.tokens
    }

    /// The text of `ids` (ids outside the vocabulary become `?`).
    pub fn decode(&self, ids: &[u8]) -> String {
        ids.iter()
            .map(|&i| {
                self.vocab
                    .get(usize::from(i))
                    .map_or('?', |&b| char::from(b))
            })
            .collect()
    }

    /// Tokens `range` as a corpus with the same vocabulary.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TextCorpus {
        TextCorpus {
            vocab: Arc::clone(&self.vocab),
            tokens: self.tokens[range].into(),
        }
    }

    /// The blocks `ranges` one after another, as one corpus with the same vocabulary.
    pub fn gather(&self, ranges: &[std::ops::Range<usize>]) -> TextCorpus {
        let mut tokens = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
        for r in ranges {
            tokens.extend_from_slice(&self.tokens[r.clone()]);
        }
        TextCorpus {
            vocab: Arc::clone(&self.vocab),
            tokens: tokens.into(),
        }
    }

    /// Splits by position: the last `round(len × validation_fraction)` tokens are validation,
    /// the rest (the beginning of the text) training. Both keep the vocabulary.
    pub fn split(&self, validation_fraction: f64) -> (TextCorpus, TextCorpus) {
        let n = self.len();
        let n_valid = ((n as f64) * validation_fraction.clamp(0.0, 1.0)).round() as usize;
        (self.slice(0..n - n_valid), self.slice(n - n_valid..n))
    }

    /// Peer `peer`'s shard of `peers`: the contiguous block `[peer·len/peers,
    /// (peer+1)·len/peers)`, so shards are disjoint, cover the corpus, and differ in length by
    /// at most one token. Panics if `peer >= peers`.
    pub fn shard(&self, peer: usize, peers: usize) -> TextCorpus {
        assert!(peer < peers, "peer {peer} of {peers}");
        let n = self.len();
        self.slice(peer * n / peers..(peer + 1) * n / peers)
    }

    /// Start positions of the fixed evaluation windows of `context + 1` tokens: consecutive,
    /// non-overlapping predictions (`window k` starts at `k·context`), at most `limit` of them.
    pub fn eval_windows(&self, context: usize, limit: usize) -> Vec<usize> {
        if context == 0 || self.len() <= context {
            return Vec::new();
        }
        let count = ((self.len() - 1) / context).min(limit);
        (0..count).map(|k| k * context).collect()
    }

    /// Cross-entropy in nats per character of `targets` under this corpus's character
    /// frequencies (add-one smoothed, so a byte the text never shows costs a finite amount):
    /// the loss of the best model that ignores context. With `targets` the validation text
    /// this is the baseline a language model has to beat.
    pub fn unigram_loss(&self, targets: &[u8]) -> f64 {
        let k = self.vocab_size();
        let mut counts = vec![1u64; k];
        for &t in self.tokens.iter() {
            counts[usize::from(t)] += 1;
        }
        let total = (self.len() + k) as f64;
        if targets.is_empty() {
            return 0.0;
        }
        let mut sum = 0f64;
        for &t in targets {
            let c = counts.get(usize::from(t)).copied().unwrap_or(1);
            sum -= (c as f64 / total).ln();
        }
        sum / targets.len() as f64
    }

    /// The targets the evaluation windows predict (tokens `start+1 ..= start+context` of each
    /// window from [`TextCorpus::eval_windows`]), for [`TextCorpus::unigram_loss`].
    pub fn eval_targets(&self, context: usize, limit: usize) -> Vec<u8> {
        self.eval_windows(context, limit)
            .into_iter()
            .flat_map(|s| self.tokens[s + 1..s + 1 + context].iter().copied())
            .collect()
    }
}

/// Draws batches of window start positions uniformly from `0..=len − window` with a seeded
/// ChaCha8 generator; [`WindowSampler::state`] resumes it exactly.
#[derive(Clone, Debug)]
pub struct WindowSampler {
    positions: usize,
    batch: Vec<usize>,
    rng: ChaCha8Rng,
    drawn: u64,
}

/// Everything needed to resume a [`WindowSampler`] exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSamplerState {
    /// Number of possible start positions (checked on restore).
    pub positions: u64,
    /// Windows drawn so far.
    pub drawn: u64,
    /// Generator seed.
    pub seed: [u8; 32],
    /// Generator stream.
    pub stream: u64,
    /// Generator word position.
    pub word_pos: u128,
}

impl WindowSampler {
    /// Batches of `batch_size` windows of `window` tokens from a text of `len` tokens. Panics
    /// if `window > len` or `batch_size == 0`.
    pub fn new(len: usize, window: usize, batch_size: usize, seed: u64) -> Self {
        assert!(window >= 1 && window <= len, "window longer than the text");
        assert!(batch_size > 0, "batch size must be positive");
        WindowSampler {
            positions: len - window + 1,
            batch: vec![0; batch_size],
            rng: ChaCha8Rng::seed_from_u64(seed),
            drawn: 0,
        }
    }

    /// Windows per batch.
    pub fn batch_size(&self) -> usize {
        self.batch.len()
    }

    /// Windows drawn so far.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    /// The next batch of start positions (valid until the next call).
    pub fn next_batch(&mut self) -> &[usize] {
        for b in &mut self.batch {
            *b = self.rng.random_range(0..self.positions);
        }
        self.drawn += self.batch.len() as u64;
        &self.batch
    }

    /// Snapshot of the generator's position.
    pub fn state(&self) -> WindowSamplerState {
        WindowSamplerState {
            positions: self.positions as u64,
            drawn: self.drawn,
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        }
    }

    /// Resumes from [`WindowSampler::state`]; refuses a state for another text length or
    /// window, leaving `self` unchanged.
    pub fn restore(&mut self, state: WindowSamplerState) -> Result<(), String> {
        if state.positions != self.positions as u64 {
            return Err(format!(
                "window sampler state covers {} start positions, this shard has {}",
                state.positions, self.positions
            ));
        }
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        self.rng = rng;
        self.drawn = state.drawn;
        Ok(())
    }
}
