//! `CodecSpec`: which compressor to run, with a short textual syntax for CLIs and configs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which compressor to run, with its parameters.
///
/// Textual form (`FromStr` / `Display` round-trip): `dense`, `f16`, `threshold-tau:0.001`,
/// `threshold:0.01`, `scaled-threshold:0.01`, `topk:0.01`, `randk:0.01`, `randk-biased:0.01`,
/// `sign`, `qsgd:16`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CodecSpec {
    /// Identity baseline: every coordinate as a little-endian f32.
    DenseF32,
    /// Every coordinate as IEEE half precision (round to nearest).
    DenseF16,
    /// Strom (2015): ±tau where |v| ≥ tau, nothing elsewhere.
    ThresholdSign {
        /// Fixed threshold, > 0.
        tau: f32,
    },
    /// Like `ThresholdSign`, with tau chosen per call so that about `density · d` entries are sent.
    AdaptiveThreshold {
        /// Target fraction of coordinates sent, in (0, 1].
        density: f32,
    },
    /// Like `AdaptiveThreshold` but sends ± the mean |v| of the chosen entries instead of tau.
    ScaledThreshold {
        /// Target fraction of coordinates sent, in (0, 1].
        density: f32,
    },
    /// Exactly the `ceil(density · d)` largest-magnitude entries with their f32 values.
    TopK {
        /// Fraction of coordinates sent, in (0, 1].
        density: f32,
    },
    /// `ceil(density · d)` coordinates drawn uniformly without replacement (seeded).
    RandK {
        /// Fraction of coordinates sent, in (0, 1].
        density: f32,
        /// Scale the sent values by d/k so that the compressor is unbiased.
        unbiased: bool,
    },
    /// One sign bit per coordinate and one scale, the mean |v| (signSGD with scale).
    ScaledSign,
    /// QSGD (Alistarh et al. 2017): ‖v‖₂ · sign · l/s with l stochastically rounded (seeded).
    Qsgd {
        /// Number of levels s, in 1..=65535.
        levels: u32,
    },
}

/// Why a codec string did not parse.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ParseSpecError {
    /// The name before `:` is not a codec.
    #[error(
        "unknown codec `{0}` (expected dense, f16, threshold-tau:T, threshold:D, scaled-threshold:D, topk:D, randk:D, randk-biased:D, sign or qsgd:S)"
    )]
    UnknownCodec(String),
    /// The codec needs a parameter after `:`.
    #[error("codec `{0}` needs a parameter, e.g. `{0}:0.01`")]
    MissingParameter(String),
    /// The codec takes no parameter.
    #[error("codec `{0}` takes no parameter")]
    UnexpectedParameter(String),
    /// The parameter is not a number or out of range.
    #[error("bad parameter `{value}` for `{codec}`: {reason}")]
    BadParameter {
        /// Codec name.
        codec: String,
        /// The text after `:`.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
}

impl CodecSpec {
    /// Checks that the parameters are in range (the same checks `FromStr` applies).
    pub fn validate(&self) -> Result<(), ParseSpecError> {
        let bad = |codec: &str, value: String, reason| ParseSpecError::BadParameter {
            codec: codec.to_string(),
            value,
            reason,
        };
        let density_ok = |d: f32| d.is_finite() && d > 0.0 && d <= 1.0;
        match *self {
            CodecSpec::DenseF32 | CodecSpec::DenseF16 | CodecSpec::ScaledSign => Ok(()),
            CodecSpec::ThresholdSign { tau } if !(tau.is_finite() && tau > 0.0) => Err(bad(
                "threshold-tau",
                tau.to_string(),
                "tau must be finite and > 0",
            )),
            CodecSpec::ThresholdSign { .. } => Ok(()),
            CodecSpec::AdaptiveThreshold { density }
            | CodecSpec::ScaledThreshold { density }
            | CodecSpec::TopK { density }
            | CodecSpec::RandK { density, .. } => {
                if density_ok(density) {
                    Ok(())
                } else {
                    Err(bad(
                        self.name(),
                        density.to_string(),
                        "density must be in (0, 1]",
                    ))
                }
            }
            CodecSpec::Qsgd { levels } => {
                if (1..=MAX_QSGD_LEVELS).contains(&levels) {
                    Ok(())
                } else {
                    Err(bad(
                        "qsgd",
                        levels.to_string(),
                        "levels must be in 1..=65535",
                    ))
                }
            }
        }
    }

    /// The name used in the textual form (before `:`).
    pub fn name(&self) -> &'static str {
        match self {
            CodecSpec::DenseF32 => "dense",
            CodecSpec::DenseF16 => "f16",
            CodecSpec::ThresholdSign { .. } => "threshold-tau",
            CodecSpec::AdaptiveThreshold { .. } => "threshold",
            CodecSpec::ScaledThreshold { .. } => "scaled-threshold",
            CodecSpec::TopK { .. } => "topk",
            CodecSpec::RandK { unbiased: true, .. } => "randk",
            CodecSpec::RandK {
                unbiased: false, ..
            } => "randk-biased",
            CodecSpec::ScaledSign => "sign",
            CodecSpec::Qsgd { .. } => "qsgd",
        }
    }
}

/// Largest QSGD level count accepted (keeps every level code within 34 bits).
pub(crate) const MAX_QSGD_LEVELS: u32 = 65_535;

impl fmt::Display for CodecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            CodecSpec::DenseF32 | CodecSpec::DenseF16 | CodecSpec::ScaledSign => f.write_str(name),
            CodecSpec::ThresholdSign { tau } => write!(f, "{name}:{tau}"),
            CodecSpec::AdaptiveThreshold { density }
            | CodecSpec::ScaledThreshold { density }
            | CodecSpec::TopK { density }
            | CodecSpec::RandK { density, .. } => write!(f, "{name}:{density}"),
            CodecSpec::Qsgd { levels } => write!(f, "{name}:{levels}"),
        }
    }
}

impl FromStr for CodecSpec {
    type Err = ParseSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, param) = match s.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p.trim())),
            None => (s, None),
        };
        let name_lc = name.to_ascii_lowercase();
        let float = |p: Option<&str>| -> Result<f32, ParseSpecError> {
            let p = p.ok_or_else(|| ParseSpecError::MissingParameter(name_lc.clone()))?;
            p.parse::<f32>().map_err(|_| ParseSpecError::BadParameter {
                codec: name_lc.clone(),
                value: p.to_string(),
                reason: "not a number",
            })
        };
        let none = |p: Option<&str>| match p {
            Some(_) => Err(ParseSpecError::UnexpectedParameter(name_lc.clone())),
            None => Ok(()),
        };
        let spec = match name_lc.as_str() {
            "dense" | "f32" => {
                none(param)?;
                CodecSpec::DenseF32
            }
            "f16" => {
                none(param)?;
                CodecSpec::DenseF16
            }
            "sign" => {
                none(param)?;
                CodecSpec::ScaledSign
            }
            "threshold-tau" => CodecSpec::ThresholdSign { tau: float(param)? },
            "threshold" => CodecSpec::AdaptiveThreshold {
                density: float(param)?,
            },
            "scaled-threshold" => CodecSpec::ScaledThreshold {
                density: float(param)?,
            },
            "topk" => CodecSpec::TopK {
                density: float(param)?,
            },
            "randk" => CodecSpec::RandK {
                density: float(param)?,
                unbiased: true,
            },
            "randk-biased" => CodecSpec::RandK {
                density: float(param)?,
                unbiased: false,
            },
            "qsgd" => {
                let p = param.ok_or_else(|| ParseSpecError::MissingParameter(name_lc.clone()))?;
                let levels = p.parse::<u32>().map_err(|_| ParseSpecError::BadParameter {
                    codec: name_lc.clone(),
                    value: p.to_string(),
                    reason: "not an integer",
                })?;
                CodecSpec::Qsgd { levels }
            }
            _ => return Err(ParseSpecError::UnknownCodec(name.to_string())),
        };
        spec.validate()?;
        Ok(spec)
    }
}
