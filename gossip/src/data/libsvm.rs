//! LIBSVM / SVMlight sparse text: `label index:value index:value ... # comment`, indices
//! 1-based and increasing (`zero_based` for the 0-based variant), `qid:` tokens ignored.
//! Loaded into a dense matrix, so it suits the small and medium sets the format is used for.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::text::{LabelReader, Labels, read_maybe_gzip, utf8};
use super::{DataError, Dataset};

/// Options for [`load_libsvm`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LibsvmOptions {
    /// Number of features; `None`: the largest index seen. Larger indices are an error.
    pub features: Option<usize>,
    /// Indices start at 0 instead of 1.
    pub zero_based: bool,
    /// How to read labels (default: distinct values sorted, so `-1`/`+1` become 0/1).
    pub labels: Labels,
    /// At least this many classes.
    pub classes: Option<usize>,
}

impl Default for LibsvmOptions {
    fn default() -> Self {
        LibsvmOptions {
            features: None,
            zero_based: false,
            labels: Labels::Sorted,
            classes: None,
        }
    }
}

/// Loads a LIBSVM/SVMlight file (plain or gzip). Errors name the line and the field (1-based,
/// the label being field 1).
pub fn load_libsvm(path: impl AsRef<Path>, options: &LibsvmOptions) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let text = utf8(path, read_maybe_gzip(path)?)?;
    parse_libsvm(path, &text, options)
}

fn parse_libsvm(path: &Path, text: &str, options: &LibsvmOptions) -> Result<Dataset, DataError> {
    let mut labels = LabelReader::new(options.labels, options.classes);
    let mut rows: Vec<Vec<(usize, f32)>> = Vec::new();
    let mut width = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut tokens = line.split_whitespace().enumerate();
        let (_, label) = tokens.next().expect("non-empty line has a token");
        labels.push(path, line_no, 1, label)?;
        let mut row = Vec::new();
        let mut last: Option<usize> = None;
        for (t, token) in tokens {
            let column = t + 1;
            let Some((key, value)) = token.split_once(':') else {
                return Err(DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    "expected index:value",
                ));
            };
            if key == "qid" {
                continue;
            }
            let idx: usize = key.parse().map_err(|_| {
                DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    "index is not a non-negative integer",
                )
            })?;
            let idx = if options.zero_based {
                idx
            } else {
                idx.checked_sub(1).ok_or_else(|| {
                    DataError::parse(path, line_no, column, token, "indices start at 1")
                })?
            };
            if last.is_some_and(|l| idx <= l) {
                return Err(DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    "indices must increase",
                ));
            }
            if let Some(d) = options.features
                && idx >= d
            {
                return Err(DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    format!("index beyond the {d} features"),
                ));
            }
            if idx >= 1 << 24 {
                return Err(DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    "index too large for a dense matrix",
                ));
            }
            let v: f32 = value.parse().map_err(|_| {
                DataError::parse(path, line_no, column, token, "value is not a number")
            })?;
            if !v.is_finite() {
                return Err(DataError::parse(
                    path,
                    line_no,
                    column,
                    token,
                    "value is not finite",
                ));
            }
            last = Some(idx);
            width = width.max(idx + 1);
            row.push((idx, v));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let width = options.features.unwrap_or(width).max(1);
    let mut features = Array2::zeros((rows.len(), width));
    for (i, row) in rows.iter().enumerate() {
        for &(j, v) in row {
            features[[i, j]] = v;
        }
    }
    let (targets, classes) = labels.finish();
    Dataset::new(features, targets, classes)
}
