//! Interim stand-in for the `murmur-compress` contract, used until that crate lands in the
//! shared tree (the peer switches to it by changing one `use` line in `peer/mod.rs`).
//!
//! It implements the contract's names with a compact wire format: dense codecs send raw f32;
//! sign codecs (`ThresholdSign`, `AdaptiveThreshold`, `ScaledThreshold`) send the index gaps
//! as LEB128 varints (about one byte each at 1% density), one sign bit per entry and one f32
//! magnitude; `TopK` sends gaps and f32 values. Codecs not listed fall back to dense f32.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};

/// Codec choice (mirror of `murmur_compress::CodecSpec`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CodecSpec {
    /// Identity baseline.
    DenseF32,
    /// Half precision (interim: sent as f32).
    DenseF16,
    /// Strom's threshold quantizer with a fixed τ: ±τ where |v| ≥ τ.
    ThresholdSign {
        /// Threshold.
        tau: f32,
    },
    /// ±τ with τ chosen to hit a target density.
    AdaptiveThreshold {
        /// Fraction of entries sent.
        density: f32,
    },
    /// Like `AdaptiveThreshold` but sends the mean |v| of the chosen entries.
    ScaledThreshold {
        /// Fraction of entries sent.
        density: f32,
    },
    /// The largest-magnitude entries with their values.
    TopK {
        /// Fraction of entries sent.
        density: f32,
    },
    /// Random entries (interim: dense).
    RandK {
        /// Fraction of entries sent.
        density: f32,
        /// Rescale to be unbiased.
        unbiased: bool,
    },
    /// One bit per entry and one scale (interim: dense).
    ScaledSign,
    /// Stochastic quantization (interim: dense).
    Qsgd {
        /// Levels.
        levels: u32,
    },
}

pub(crate) trait Compressor: Send + std::fmt::Debug {
    fn spec(&self) -> &CodecSpec;
    fn compress(&mut self, input: &[f32]) -> Compressed;
}

#[derive(Debug)]
struct Codec {
    spec: CodecSpec,
}

pub(crate) fn build(spec: &CodecSpec, _seed: u64) -> Box<dyn Compressor> {
    Box::new(Codec { spec: spec.clone() })
}

/// Indices of the `k` largest |v| (ties broken by index), sorted.
fn top_k(input: &[f32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..input.len() as u32).collect();
    order.sort_by(|&a, &b| {
        input[b as usize]
            .abs()
            .total_cmp(&input[a as usize].abs())
            .then(a.cmp(&b))
    });
    let mut chosen: Vec<u32> = order
        .into_iter()
        .take(k)
        .filter(|&i| input[i as usize] != 0.0)
        .collect();
    chosen.sort_unstable();
    chosen
}

impl Compressor for Codec {
    fn spec(&self) -> &CodecSpec {
        &self.spec
    }

    fn compress(&mut self, input: &[f32]) -> Compressed {
        let dim = input.len() as u32;
        let k = |density: f32| ((density * input.len() as f32).ceil() as usize).max(1);
        let sign = |idx: Vec<u32>, magnitude: f32| {
            let negative = idx.iter().map(|&i| input[i as usize] < 0.0).collect();
            Compressed::Sign {
                dim,
                magnitude,
                idx,
                negative,
            }
        };
        match self.spec {
            CodecSpec::ThresholdSign { tau } => {
                let idx = (0..dim)
                    .filter(|&i| input[i as usize].abs() >= tau)
                    .collect();
                sign(idx, tau)
            }
            CodecSpec::AdaptiveThreshold { density } => {
                let idx = top_k(input, k(density));
                let tau = idx
                    .iter()
                    .map(|&i| input[i as usize].abs())
                    .fold(f32::INFINITY, f32::min);
                sign(idx, if tau.is_finite() { tau } else { 0.0 })
            }
            CodecSpec::ScaledThreshold { density } => {
                let idx = top_k(input, k(density));
                let mean = idx.iter().map(|&i| input[i as usize].abs()).sum::<f32>()
                    / idx.len().max(1) as f32;
                sign(idx, mean)
            }
            CodecSpec::TopK { density } => {
                let idx = top_k(input, k(density));
                let values = idx.iter().map(|&i| input[i as usize]).collect();
                Compressed::Sparse { dim, idx, values }
            }
            _ => Compressed::Dense(input.to_vec()),
        }
    }
}

/// One compressed vector, decoded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Compressed {
    Dense(Vec<f32>),
    Sparse {
        dim: u32,
        idx: Vec<u32>,
        values: Vec<f32>,
    },
    Sign {
        dim: u32,
        magnitude: f32,
        idx: Vec<u32>,
        negative: Vec<bool>,
    },
}

/// Wire form: index gaps instead of indices, sign bits packed.
#[derive(Serialize, Deserialize)]
enum Wire {
    Dense(Vec<f32>),
    Sparse {
        dim: u32,
        gaps: Vec<u32>,
        values: Vec<f32>,
    },
    Sign {
        dim: u32,
        magnitude: f32,
        gaps: Vec<u32>,
        signs: Vec<u8>,
    },
}

fn gaps(idx: &[u32]) -> Vec<u32> {
    let mut prev = 0;
    idx.iter()
        .enumerate()
        .map(|(k, &i)| {
            let g = if k == 0 { i } else { i - prev - 1 };
            prev = i;
            g
        })
        .collect()
}

fn indices(dim: u32, gaps: &[u32]) -> Result<Vec<u32>, DecodeError> {
    let mut out = Vec::with_capacity(gaps.len());
    let mut next: u64 = 0;
    for &g in gaps {
        let i = next + u64::from(g);
        if i >= u64::from(dim) {
            return Err(DecodeError::IndexOutOfRange);
        }
        out.push(i as u32);
        next = i + 1;
    }
    Ok(out)
}

impl Compressed {
    pub(crate) fn dim(&self) -> usize {
        match self {
            Compressed::Dense(v) => v.len(),
            Compressed::Sparse { dim, .. } | Compressed::Sign { dim, .. } => *dim as usize,
        }
    }

    pub(crate) fn nnz(&self) -> usize {
        match self {
            Compressed::Dense(v) => v.len(),
            Compressed::Sparse { idx, .. } | Compressed::Sign { idx, .. } => idx.len(),
        }
    }

    pub(crate) fn add_to(&self, out: &mut [f32], alpha: f32) {
        assert_eq!(out.len(), self.dim(), "add_to: dimension mismatch");
        match self {
            Compressed::Dense(v) => {
                for (o, x) in out.iter_mut().zip(v) {
                    *o += alpha * x;
                }
            }
            Compressed::Sparse { idx, values, .. } => {
                for (&i, x) in idx.iter().zip(values) {
                    out[i as usize] += alpha * x;
                }
            }
            Compressed::Sign {
                magnitude,
                idx,
                negative,
                ..
            } => {
                for (&i, &neg) in idx.iter().zip(negative) {
                    let x = if neg { -*magnitude } else { *magnitude };
                    out[i as usize] += alpha * x;
                }
            }
        }
    }

    pub(crate) fn to_dense(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.dim()];
        self.add_to(&mut v, 1.0);
        v
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let wire = match self {
            Compressed::Dense(v) => Wire::Dense(v.clone()),
            Compressed::Sparse { dim, idx, values } => Wire::Sparse {
                dim: *dim,
                gaps: gaps(idx),
                values: values.clone(),
            },
            Compressed::Sign {
                dim,
                magnitude,
                idx,
                negative,
            } => {
                let mut signs = vec![0u8; negative.len().div_ceil(8)];
                for (k, &neg) in negative.iter().enumerate() {
                    if neg {
                        signs[k / 8] |= 1 << (k % 8);
                    }
                }
                Wire::Sign {
                    dim: *dim,
                    magnitude: *magnitude,
                    gaps: gaps(idx),
                    signs,
                }
            }
        };
        postcard::to_stdvec(&wire).expect("serializes into a Vec")
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.encode().len()
    }

    pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Compressed, DecodeError> {
        if bytes.len() > limits.max_bytes {
            return Err(DecodeError::TooLarge);
        }
        let (wire, rest): (Wire, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        let c = match wire {
            Wire::Dense(v) => Compressed::Dense(v),
            Wire::Sparse { dim, gaps, values } => {
                if gaps.len() != values.len() {
                    return Err(DecodeError::Malformed);
                }
                let idx = indices(dim, &gaps)?;
                Compressed::Sparse { dim, idx, values }
            }
            Wire::Sign {
                dim,
                magnitude,
                gaps,
                signs,
            } => {
                if signs.len() != gaps.len().div_ceil(8) {
                    return Err(DecodeError::Malformed);
                }
                let idx = indices(dim, &gaps)?;
                let negative = (0..idx.len())
                    .map(|k| signs[k / 8] & (1 << (k % 8)) != 0)
                    .collect();
                Compressed::Sign {
                    dim,
                    magnitude,
                    idx,
                    negative,
                }
            }
        };
        if c.dim() != limits.expected_dim {
            return Err(DecodeError::Dimension {
                expected: limits.expected_dim,
                got: c.dim(),
            });
        }
        Ok(c)
    }

    pub(crate) fn is_finite(&self) -> bool {
        match self {
            Compressed::Dense(v) | Compressed::Sparse { values: v, .. } => {
                v.iter().all(|x| x.is_finite())
            }
            Compressed::Sign { magnitude, .. } => magnitude.is_finite(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct DecodeLimits {
    pub(crate) expected_dim: usize,
    pub(crate) max_bytes: usize,
}

/// Decoding failure of a compressed frame.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    /// Frame over the cap.
    #[error("compressed frame over the size cap")]
    TooLarge,
    /// Unparseable frame.
    #[error("malformed compressed frame")]
    Malformed,
    /// An index past the dimension.
    #[error("index out of range")]
    IndexOutOfRange,
    /// Another dimension than expected.
    #[error("dimension {got}, expected {expected}")]
    Dimension {
        /// Expected.
        expected: usize,
        /// In the frame.
        got: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let v: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for spec in [
            CodecSpec::DenseF32,
            CodecSpec::ThresholdSign { tau: 5.0 },
            CodecSpec::AdaptiveThreshold { density: 0.05 },
            CodecSpec::ScaledThreshold { density: 0.05 },
            CodecSpec::TopK { density: 0.05 },
        ] {
            let c = build(&spec, 0).compress(&v);
            let limits = DecodeLimits {
                expected_dim: 300,
                max_bytes: 1 << 20,
            };
            assert_eq!(Compressed::decode(&c.encode(), &limits), Ok(c.clone()));
            let bytes = c.encode();
            for cut in 0..bytes.len() {
                assert!(Compressed::decode(&bytes[..cut], &limits).is_err());
            }
        }
    }
}
