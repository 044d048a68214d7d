//! The character-level decoder-only transformer (Vaswani et al. 2017; GPT-2's pre-LayerNorm
//! arrangement, Radford et al. 2019) on candle tensors.
//!
//! `x = tok_emb[ids] + pos_emb[0..T]`, then per block `x += attn(LN₁(x))`,
//! `x += W₂·GELU(W₁·LN₂(x))` (hidden width 4·W, exact erf GELU), then `LN_f` and logits
//! `LN_f(x)·tok_embᵀ`: the output head is **tied** to the token embedding (Press & Wolf 2017),
//! which saves `vocab × width` parameters and is what GPT-2 does. Attention is causal
//! multi-head scaled dot-product attention with one fused `qkv` projection. LayerNorm uses
//! ε = 1e-5 and the biased variance, as PyTorch does.

use candle_core::{D, DType, Device, Result, Tensor};

use super::spec::TransformerSpec;
use crate::layout::ParamLayout;

/// LayerNorm's ε.
const LN_EPS: f64 = 1e-5;

/// A transformer instantiated for a vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Transformer {
    pub(super) spec: TransformerSpec,
    pub(super) vocab: usize,
    /// Layout indices of every tensor the forward pass reads.
    idx: Indices,
}

#[derive(Clone, Debug, PartialEq)]
struct Indices {
    tok_emb: usize,
    pos_emb: usize,
    ln_f: (usize, usize),
    blocks: Vec<BlockIndices>,
}

#[derive(Clone, Debug, PartialEq)]
struct BlockIndices {
    ln1: (usize, usize),
    qkv: (usize, usize),
    proj: (usize, usize),
    ln2: (usize, usize),
    fc: (usize, usize),
    mlp_proj: (usize, usize),
}

impl Transformer {
    pub(super) fn new(spec: TransformerSpec, vocab: usize) -> (Transformer, ParamLayout) {
        let layout = Self::layout(spec, vocab);
        let at = |name: &str| {
            layout
                .index_of(name)
                .unwrap_or_else(|| panic!("layout lacks {name}"))
        };
        let pair = |prefix: &str| {
            (
                at(&format!("{prefix}.weight")),
                at(&format!("{prefix}.bias")),
            )
        };
        let idx = Indices {
            tok_emb: at("tok_emb.weight"),
            pos_emb: at("pos_emb.weight"),
            ln_f: pair("ln_f"),
            blocks: (0..spec.layers)
                .map(|l| BlockIndices {
                    ln1: pair(&format!("blocks.{l}.ln1")),
                    qkv: pair(&format!("blocks.{l}.attn.qkv")),
                    proj: pair(&format!("blocks.{l}.attn.proj")),
                    ln2: pair(&format!("blocks.{l}.ln2")),
                    fc: pair(&format!("blocks.{l}.mlp.fc")),
                    mlp_proj: pair(&format!("blocks.{l}.mlp.proj")),
                })
                .collect(),
        };
        (Transformer { spec, vocab, idx }, layout)
    }

    fn layout(spec: TransformerSpec, vocab: usize) -> ParamLayout {
        let w = spec.width;
        let mut t: Vec<(String, Vec<usize>)> = vec![
            ("tok_emb.weight".into(), vec![vocab, w]),
            ("pos_emb.weight".into(), vec![spec.context, w]),
            ("ln_f.weight".into(), vec![w]),
            ("ln_f.bias".into(), vec![w]),
        ];
        for l in 0..spec.layers {
            let mut add = |name: &str, out: usize, inp: usize| {
                t.push((format!("blocks.{l}.{name}.weight"), vec![out, inp]));
                t.push((format!("blocks.{l}.{name}.bias"), vec![out]));
            };
            add("attn.qkv", 3 * w, w);
            add("attn.proj", w, w);
            add("mlp.fc", 4 * w, w);
            add("mlp.proj", w, 4 * w);
            for ln in ["ln1", "ln2"] {
                t.push((format!("blocks.{l}.{ln}.weight"), vec![w]));
                t.push((format!("blocks.{l}.{ln}.bias"), vec![w]));
            }
        }
        ParamLayout::new(t)
    }

    /// What the initialisation draws for the tensor called `name`: GPT-2's scheme —
    /// LayerNorm gains 1 and biases 0, every other bias 0, weights and embeddings
    /// N(0, 0.02²), the two projections into the residual stream N(0, (0.02/√(2·layers))²).
    pub(super) fn init_of(&self, name: &str) -> Init {
        let is_ln = name.contains(".ln") || name.starts_with("ln_f");
        if name.ends_with(".bias") {
            Init::Const(0.0)
        } else if is_ln {
            Init::Const(1.0)
        } else if name.ends_with("attn.proj.weight") || name.ends_with("mlp.proj.weight") {
            Init::Normal(0.02 / (2.0 * self.spec.layers as f64).sqrt())
        } else {
            Init::Normal(0.02)
        }
    }

    /// Summed cross-entropy (nats) over every predicted position, the number of positions,
    /// and (for evaluation) the number predicted correctly by the arg-max.
    ///
    /// `windows` holds `batch` windows of `context + 1` token ids; position `t` of a window
    /// predicts token `t + 1` from tokens `0..=t`.
    pub(super) fn forward(
        &self,
        p: &[Tensor],
        windows: &[u8],
        dtype: DType,
        count_correct: bool,
    ) -> Result<(Tensor, usize, usize)> {
        let TransformerSpec {
            width: w,
            heads: h,
            context: t,
            ..
        } = self.spec;
        let batch = windows.len() / (t + 1);
        let mut ids = Vec::with_capacity(batch * t);
        let mut targets = Vec::with_capacity(batch * t);
        for win in windows.chunks_exact(t + 1) {
            ids.extend(win[..t].iter().map(|&i| u32::from(i)));
            targets.extend(win[1..].iter().map(|&i| u32::from(i)));
        }
        let dev = Device::Cpu;
        let n = batch * t;
        let ids = Tensor::from_vec(ids, n, &dev)?;
        let tok_emb = &p[self.idx.tok_emb];
        let mut x = tok_emb
            .index_select(&ids, 0)?
            .reshape((batch, t, w))?
            .broadcast_add(&p[self.idx.pos_emb])?;
        let mask = causal_mask(t, dtype)?;
        let hd = w / h;
        let scale = 1.0 / (hd as f64).sqrt();
        for b in &self.idx.blocks {
            let a = layer_norm(&x, &p[b.ln1.0], &p[b.ln1.1])?.reshape((n, w))?;
            let qkv = linear(&a, p, b.qkv)?
                .reshape((batch, t, 3, h, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let att = q
                .matmul(&k.t()?)?
                .affine(scale, 0.0)?
                .broadcast_add(&mask)?;
            let y = softmax_last(&att)?
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, w))?;
            x = (x + linear(&y, p, b.proj)?.reshape((batch, t, w))?)?;
            let m = layer_norm(&x, &p[b.ln2.0], &p[b.ln2.1])?.reshape((n, w))?;
            let m = linear(&linear(&m, p, b.fc)?.gelu_erf()?, p, b.mlp_proj)?;
            x = (x + m.reshape((batch, t, w))?)?;
        }
        let x = layer_norm(&x, &p[self.idx.ln_f.0], &p[self.idx.ln_f.1])?.reshape((n, w))?;
        let logits = x.matmul(&tok_emb.t()?)?;
        let correct = if count_correct {
            let best = logits.argmax(1)?.to_vec1::<u32>()?;
            best.iter().zip(&targets).filter(|(a, b)| a == b).count()
        } else {
            0
        };
        let targets = Tensor::from_vec(targets, (n, 1), &dev)?;
        let loss = summed_cross_entropy(&logits, &targets)?;
        Ok((loss, n, correct))
    }
}

/// How one tensor starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Init {
    /// Every entry this value.
    Const(f32),
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
}

/// `x·Wᵀ + b` for a `[n, in]` input and the weight/bias pair at `idx`.
fn linear(x: &Tensor, p: &[Tensor], idx: (usize, usize)) -> Result<Tensor> {
    x.matmul(&p[idx.0].t()?)?.broadcast_add(&p[idx.1])
}

/// LayerNorm over the last dimension (biased variance, ε = 1e-5).
fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + LN_EPS)?.sqrt()?)?
        .broadcast_mul(gain)?
        .broadcast_add(bias)
}

/// Softmax over the last dimension, shifted by the (gradient-free) row maximum.
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// `[t, t]`: 0 where a position may attend (key ≤ query), −∞ above the diagonal.
fn causal_mask(t: usize, dtype: DType) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(mask, (t, t), &Device::Cpu)?.to_dtype(dtype)
}

/// Σ over rows of `−log softmax(logits)[target]`, with `targets` as `[n, 1]` u32 ids.
pub(super) fn summed_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(1)?.log()?;
    let picked = shifted.gather(targets, 1)?;
    (log_sum - picked)?.sum_all()
}
