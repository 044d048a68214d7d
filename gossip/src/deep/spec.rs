//! The deep model families as configuration strings:
//! `cnn`, `cnn:C1,C2,FC`, `transformer`, `transformer:layers=L,width=W,heads=H,context=T`.

use std::fmt;
use std::str::FromStr;

/// Widths of the LeNet-style CNN (see [`super`] for the architecture).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CnnSpec {
    /// Channels of the first 5×5 convolution.
    pub c1: usize,
    /// Channels of the second 5×5 convolution.
    pub c2: usize,
    /// Units of the hidden fully connected layer.
    pub hidden: usize,
}

impl Default for CnnSpec {
    /// `cnn:8,32,128`: 73,594 parameters on 28×28 images with 10 classes.
    fn default() -> Self {
        CnnSpec {
            c1: 8,
            c2: 32,
            hidden: 128,
        }
    }
}

/// Shape of the character-level decoder-only transformer (see [`super`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransformerSpec {
    /// Number of transformer blocks.
    pub layers: usize,
    /// Width of the residual stream (embedding size).
    pub width: usize,
    /// Attention heads per block; must divide `width`.
    pub heads: usize,
    /// Context length: tokens the model sees (and predicts) per window.
    pub context: usize,
}

impl Default for TransformerSpec {
    /// `transformer:layers=2,width=128,heads=4,context=64`: 415,488 parameters with the
    /// 80-byte Shakespeare vocabulary.
    fn default() -> Self {
        TransformerSpec {
            layers: 2,
            width: 128,
            heads: 4,
            context: 64,
        }
    }
}

/// Which deep model to train (instantiate with [`DeepSpec::build`]).
///
/// Grammar (whitespace around items is ignored):
/// - `cnn` — [`CnnSpec::default`]; `cnn:C1,C2,FC` — all three widths;
/// - `transformer` — [`TransformerSpec::default`]; `transformer:KEY=N,...` with keys
///   `layers`, `width`, `heads`, `context`, each optional (missing keys keep their default).
///
/// Zero widths parse; [`DeepSpec::build`] refuses them naming the setting. [`fmt::Display`]
/// writes the full form, which parses back to the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeepSpec {
    /// LeNet-style convolutional network for square single-channel images.
    Cnn(CnnSpec),
    /// Character-level decoder-only transformer.
    Transformer(TransformerSpec),
}

impl Default for DeepSpec {
    fn default() -> Self {
        DeepSpec::Cnn(CnnSpec::default())
    }
}

impl fmt::Display for DeepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeepSpec::Cnn(c) => write!(f, "cnn:{},{},{}", c.c1, c.c2, c.hidden),
            DeepSpec::Transformer(t) => write!(
                f,
                "transformer:layers={},width={},heads={},context={}",
                t.layers, t.width, t.heads, t.context
            ),
        }
    }
}

impl FromStr for DeepSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (family, args) = match text.split_once(':') {
            Some((family, args)) => (family.trim(), Some(args)),
            None => (text, None),
        };
        let number = |v: &str, what: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad {what} {v:?} in {s:?}: expected a whole number"))
        };
        match family {
            "cnn" => {
                let Some(args) = args else {
                    return Ok(DeepSpec::Cnn(CnnSpec::default()));
                };
                let widths: Vec<&str> = args.split(',').collect();
                let [c1, c2, hidden] = widths.as_slice() else {
                    return Err(format!(
                        "bad cnn spec {s:?}: expected cnn or cnn:C1,C2,FC (three widths)"
                    ));
                };
                Ok(DeepSpec::Cnn(CnnSpec {
                    c1: number(c1, "c1")?,
                    c2: number(c2, "c2")?,
                    hidden: number(hidden, "fc width")?,
                }))
            }
            "transformer" => {
                let mut t = TransformerSpec::default();
                let Some(args) = args else {
                    return Ok(DeepSpec::Transformer(t));
                };
                let mut seen = Vec::new();
                for item in args.split(',').filter(|i| !i.trim().is_empty()) {
                    let Some((key, value)) = item.split_once('=') else {
                        return Err(format!(
                            "bad item {item:?} in {s:?}: expected KEY=N with KEY one of layers, width, heads, context"
                        ));
                    };
                    let key = key.trim();
                    if seen.contains(&key) {
                        return Err(format!("{key} given twice in {s:?}"));
                    }
                    seen.push(key);
                    let slot = match key {
                        "layers" => &mut t.layers,
                        "width" => &mut t.width,
                        "heads" => &mut t.heads,
                        "context" => &mut t.context,
                        other => {
                            return Err(format!(
                                "unknown transformer setting {other:?} in {s:?}: expected layers, width, heads or context"
                            ));
                        }
                    };
                    *slot = number(value, key)?;
                }
                Ok(DeepSpec::Transformer(t))
            }
            _ => Err(format!(
                "unknown deep model {s:?}: expected cnn, cnn:C1,C2,FC, transformer or transformer:layers=L,width=W,heads=H,context=T"
            )),
        }
    }
}

crate::data::serde_via_str!(DeepSpec);
