//! The model family as configuration: `"linear"`, `"logistic"`, `"softmax"`, `"mlp:64,32"`,
//! and with the `deep` feature `"cnn"`, `"cnn:C1,C2,FC"`, `"transformer"`,
//! `"transformer:layers=L,width=W,heads=H,context=T"` ([`crate::deep::DeepSpec`]).

use std::fmt;
use std::str::FromStr;

/// Which model to train (instantiate with [`ModelSpec::build`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum ModelSpec {
    /// Linear regression with squared loss.
    Linear,
    /// Binary logistic regression (2 classes).
    Logistic,
    /// Multinomial (softmax) logistic regression.
    #[default]
    Softmax,
    /// Fully connected ReLU network with these hidden widths, softmax cross-entropy on top.
    Mlp {
        /// Hidden layer widths, input side first.
        hidden: Vec<usize>,
    },
    /// A network trained by autodiff: the LeNet-style CNN or the character-level transformer
    /// (built by the task, not by [`ModelSpec::build`]).
    #[cfg(feature = "deep")]
    Deep(crate::deep::DeepSpec),
}

impl ModelSpec {
    /// Whether this is a deep (autodiff) model rather than one of the analytic-gradient ones.
    pub fn is_deep(&self) -> bool {
        #[cfg(feature = "deep")]
        if matches!(self, ModelSpec::Deep(_)) {
            return true;
        }
        false
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Linear => write!(f, "linear"),
            ModelSpec::Logistic => write!(f, "logistic"),
            ModelSpec::Softmax => write!(f, "softmax"),
            ModelSpec::Mlp { hidden } => {
                write!(f, "mlp:")?;
                for (i, h) in hidden.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
            #[cfg(feature = "deep")]
            ModelSpec::Deep(d) => write!(f, "{d}"),
        }
    }
}

impl FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "linear" => Ok(ModelSpec::Linear),
            "logistic" => Ok(ModelSpec::Logistic),
            "softmax" => Ok(ModelSpec::Softmax),
            other if other.starts_with("cnn") || other.starts_with("transformer") => {
                #[cfg(feature = "deep")]
                return other.parse().map(ModelSpec::Deep);
                #[cfg(not(feature = "deep"))]
                return Err(format!(
                    "model {s:?} needs murmur-gossip's `deep` feature (built without it)"
                ));
            }
            other => {
                let Some(widths) = other.strip_prefix("mlp:") else {
                    return Err(format!(
                        "unknown model {s:?}: expected linear, logistic, softmax, mlp:W1,W2,..., cnn[:C1,C2,FC] or transformer[:layers=L,width=W,heads=H,context=T]"
                    ));
                };
                let hidden = widths
                    .split(',')
                    .map(|w| match w.trim().parse::<usize>() {
                        Ok(h) if h > 0 => Ok(h),
                        _ => Err(format!("bad hidden width {w:?} in {s:?}")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ModelSpec::Mlp { hidden })
            }
        }
    }
}

crate::data::serde_via_str!(ModelSpec);
