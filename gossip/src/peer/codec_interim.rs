//! Interim stand-in for the `murmur-compress` contract (DenseF32 and threshold codecs only),
//! used until that crate lands in the shared tree; the peer switches to it with one line.
#![allow(dead_code)]
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// Codec choice (mirror of `murmur_compress::CodecSpec`).
pub enum CodecSpec {
    DenseF32,
    DenseF16,
    ThresholdSign { tau: f32 },
    AdaptiveThreshold { density: f32 },
    ScaledThreshold { density: f32 },
    TopK { density: f32 },
    RandK { density: f32, unbiased: bool },
    ScaledSign,
    Qsgd { levels: u32 },
}
pub(crate) trait Compressor: Send + std::fmt::Debug {
    fn spec(&self) -> &CodecSpec;
    fn compress(&mut self, input: &[f32]) -> Compressed;
}
#[derive(Debug)]
struct C {
    spec: CodecSpec,
}
impl Compressor for C {
    fn spec(&self) -> &CodecSpec {
        &self.spec
    }
    fn compress(&mut self, input: &[f32]) -> Compressed {
        match self.spec {
            CodecSpec::DenseF32 => Compressed {
                dim: input.len(),
                idx: (0..input.len() as u32).collect(),
                val: input.to_vec(),
            },
            CodecSpec::ThresholdSign { tau } => {
                let mut idx = vec![];
                let mut val = vec![];
                for (i, &x) in input.iter().enumerate() {
                    if x >= tau {
                        idx.push(i as u32);
                        val.push(tau)
                    } else if x <= -tau {
                        idx.push(i as u32);
                        val.push(-tau)
                    }
                }
                Compressed {
                    dim: input.len(),
                    idx,
                    val,
                }
            }
            CodecSpec::AdaptiveThreshold { density } | CodecSpec::TopK { density } => {
                let k = ((density * input.len() as f32).ceil() as usize).max(1);
                let mut a: Vec<f32> = input.iter().map(|x| x.abs()).collect();
                a.sort_by(|x, y| y.total_cmp(x));
                let tau = a[k - 1];
                let mut idx = vec![];
                let mut val = vec![];
                if tau > 0.0 {
                    for (i, &x) in input.iter().enumerate() {
                        if x.abs() >= tau && idx.len() < k {
                            idx.push(i as u32);
                            val.push(if matches!(self.spec, CodecSpec::TopK { .. }) {
                                x
                            } else {
                                tau * x.signum()
                            })
                        }
                    }
                }
                Compressed {
                    dim: input.len(),
                    idx,
                    val,
                }
            }
            // Every other codec: dense until the real crate lands.
            _ => Compressed {
                dim: input.len(),
                idx: (0..input.len() as u32).collect(),
                val: input.to_vec(),
            },
        }
    }
}
pub(crate) fn build(spec: &CodecSpec, _seed: u64) -> Box<dyn Compressor> {
    Box::new(C { spec: spec.clone() })
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Compressed {
    dim: usize,
    idx: Vec<u32>,
    val: Vec<f32>,
}
impl Compressed {
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }
    pub(crate) fn nnz(&self) -> usize {
        self.idx.len()
    }
    pub(crate) fn add_to(&self, out: &mut [f32], alpha: f32) {
        assert_eq!(out.len(), self.dim);
        for (i, v) in self.idx.iter().zip(&self.val) {
            out[*i as usize] += alpha * v;
        }
    }
    pub(crate) fn to_dense(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.dim];
        self.add_to(&mut v, 1.0);
        v
    }
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap()
    }
    pub(crate) fn encoded_len(&self) -> usize {
        self.encode().len()
    }
    pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Compressed, DecodeError> {
        if bytes.len() > limits.max_bytes {
            return Err(DecodeError::TooLarge);
        }
        let c: Compressed = postcard::from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if c.dim != limits.expected_dim {
            return Err(DecodeError::Dim);
        }
        if c.idx.iter().any(|&i| i as usize >= c.dim) || c.idx.len() != c.val.len() {
            return Err(DecodeError::Malformed);
        }
        Ok(c)
    }
    pub(crate) fn is_finite(&self) -> bool {
        self.val.iter().all(|v| v.is_finite())
    }
}
#[derive(Clone, Debug)]
pub(crate) struct DecodeLimits {
    pub(crate) expected_dim: usize,
    pub(crate) max_bytes: usize,
}
impl DecodeLimits {
    pub(crate) fn for_dim(dim: usize) -> Self {
        DecodeLimits {
            expected_dim: dim,
            max_bytes: 8 * dim + 1024,
        }
    }
}
/// Decoding failure of a compressed frame.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("too large")]
    TooLarge,
    #[error("malformed")]
    Malformed,
    #[error("dim")]
    Dim,
}
