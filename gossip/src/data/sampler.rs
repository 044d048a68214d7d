//! Seeded minibatch sampling without replacement: each epoch is a fresh permutation of the
//! samples, cut into batches; a batch that runs past the end of an epoch continues into the
//! next permutation, so every batch has the same size.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Deals out minibatches of sample indices `0..n`.
#[derive(Clone, Debug)]
pub struct MinibatchSampler {
    order: Vec<u32>,
    cursor: usize,
    batch: Vec<usize>,
    epochs: u64,
    rng: ChaCha8Rng,
}

/// Everything needed to resume a [`MinibatchSampler`] exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Current permutation.
    pub order: Vec<u32>,
    /// Position in the permutation.
    pub cursor: u64,
    /// Completed permutations.
    pub epochs: u64,
    /// Generator seed.
    pub seed: [u8; 32],
    /// Generator stream.
    pub stream: u64,
    /// Generator word position.
    pub word_pos: u128,
}

impl MinibatchSampler {
    /// Samples batches of `min(batch_size, n)` indices from `0..n`. Panics if `n == 0` or
    /// `batch_size == 0`.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Self {
        assert!(n > 0, "cannot sample from an empty dataset");
        assert!(batch_size > 0, "batch size must be positive");
        assert!(u32::try_from(n).is_ok(), "at most 2^32 samples");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        MinibatchSampler {
            order,
            cursor: 0,
            batch: vec![0; batch_size.min(n)],
            epochs: 0,
            rng,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Always false (an empty sampler cannot be built).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Indices per batch.
    pub fn batch_size(&self) -> usize {
        self.batch.len()
    }

    /// Completed passes over the data.
    pub fn epochs(&self) -> u64 {
        self.epochs
    }

    /// The next minibatch (valid until the next call).
    pub fn next_batch(&mut self) -> &[usize] {
        for k in 0..self.batch.len() {
            if self.cursor == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
                self.epochs += 1;
            }
            self.batch[k] = self.order[self.cursor] as usize;
            self.cursor += 1;
        }
        &self.batch
    }

    /// Snapshot of the sampler's position.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            order: self.order.clone(),
            cursor: self.cursor as u64,
            epochs: self.epochs,
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        }
    }

    /// Resumes from [`MinibatchSampler::state`]; refuses a state for another sample count or
    /// a corrupt permutation, leaving `self` unchanged.
    pub fn restore(&mut self, state: SamplerState) -> Result<(), String> {
        let n = self.order.len();
        if state.order.len() != n {
            return Err(format!(
                "sampler state covers {} samples, this shard has {n}",
                state.order.len()
            ));
        }
        if state.cursor as usize > n {
            return Err("sampler cursor past the end".into());
        }
        let mut seen = vec![false; n];
        for &i in &state.order {
            if i as usize >= n || std::mem::replace(&mut seen[i as usize], true) {
                return Err("sampler order is not a permutation".into());
            }
        }
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        self.order = state.order;
        self.cursor = state.cursor as usize;
        self.epochs = state.epochs;
        self.rng = rng;
        Ok(())
    }
}
