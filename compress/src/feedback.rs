//! Stand-alone error feedback (Seide et al. 2014; Strom 2015; Karimireddy et al. 2019): the
//! wrapper keeps the residual r of everything not yet sent.

use crate::codecs::Compressor;
use crate::wire::Compressed;

/// Error feedback around a compressor: `r += g; c = Q(r); r -= decode(c)`.
///
/// After any number of pushes, (sum of decoded messages) + residual equals the sum of the
/// inputs up to float rounding: nothing is lost, only delayed.
#[derive(Debug)]
pub struct ErrorFeedback {
    residual: Vec<f32>,
    compressor: Box<dyn Compressor>,
}

impl ErrorFeedback {
    /// A zero residual of `dim` entries.
    pub fn new(dim: usize, compressor: Box<dyn Compressor>) -> Self {
        ErrorFeedback {
            residual: vec![0.0; dim],
            compressor,
        }
    }

    /// Adds `g` to the residual, compresses it, subtracts what was sent and returns the message.
    ///
    /// # Panics
    /// If `g.len()` differs from the dimension (a caller bug).
    pub fn push(&mut self, g: &[f32]) -> Compressed {
        assert_eq!(
            g.len(),
            self.residual.len(),
            "ErrorFeedback::push: input has {} entries, residual has {}",
            g.len(),
            self.residual.len()
        );
        for (r, &x) in self.residual.iter_mut().zip(g) {
            *r += x;
        }
        let c = self.compressor.compress(&self.residual);
        c.add_to(&mut self.residual, -1.0);
        c
    }

    /// What has not been sent yet.
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    /// The wrapped compressor.
    pub fn compressor(&self) -> &dyn Compressor {
        self.compressor.as_ref()
    }
}
