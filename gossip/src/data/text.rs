//! CSV loading (plain or gzip, detected by magic bytes) and the label conventions shared with
//! the LIBSVM loader.

use std::io::Read;
use std::path::Path;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset};

/// How the label field is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Labels {
    /// Class indices `0, 1, 2, ...` written as numbers; the class count is the largest + 1.
    #[default]
    Index,
    /// Any numbers (e.g. `-1`/`+1`); the distinct values, sorted, become classes `0..k`.
    Sorted,
    /// Real-valued regression targets.
    Regression,
}

/// Options for [`load_csv`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvOptions {
    /// Skip the first non-empty line.
    pub header: bool,
    /// 0-based column of the label; negative counts from the end (`-1`: last column).
    pub label_column: i64,
    /// Field separator.
    pub delimiter: char,
    /// How to read labels.
    pub labels: Labels,
    /// With [`Labels::Index`]: at least this many classes (a test file may miss the last).
    pub classes: Option<usize>,
    /// Every feature is multiplied by this (e.g. `0.0625` for 0..16 pixels).
    pub scale: f32,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: false,
            label_column: -1,
            delimiter: ',',
            labels: Labels::Index,
            classes: None,
            scale: 1.0,
        }
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    gunzip_if_needed(path, raw)
}

pub(crate) fn gunzip_if_needed(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

pub(crate) fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, DataError> {
    String::from_utf8(bytes).map_err(|e| {
        DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

/// Collects labels as they are parsed and turns them into class indices at the end.
#[derive(Debug)]
pub(crate) struct LabelReader {
    kind: Labels,
    min_classes: Option<usize>,
    raw: Vec<f32>,
}

impl LabelReader {
    pub(crate) fn new(kind: Labels, min_classes: Option<usize>) -> Self {
        LabelReader {
            kind,
            min_classes,
            raw: Vec::new(),
        }
    }

    /// Parses one label field; `line`/`column` locate it for the error.
    pub(crate) fn push(
        &mut self,
        path: &Path,
        line: usize,
        column: usize,
        field: &str,
    ) -> Result<(), DataError> {
        let v: f32 = field
            .trim()
            .parse()
            .map_err(|_| DataError::parse(path, line, column, field, "expected a numeric label"))?;
        if !v.is_finite() {
            return Err(DataError::parse(
                path,
                line,
                column,
                field,
                "label is not finite",
            ));
        }
        if self.kind == Labels::Index {
            if v < 0.0 || v.fract() != 0.0 || v > 1e6 {
                return Err(DataError::parse(
                    path,
                    line,
                    column,
                    field,
                    "expected a class index 0, 1, 2, ...",
                ));
            }
            if let Some(k) = self.min_classes
                && v as usize >= k
            {
                return Err(DataError::parse(
                    path,
                    line,
                    column,
                    field,
                    format!("class index must be below {k}"),
                ));
            }
        }
        self.raw.push(v);
        Ok(())
    }

    /// The targets and class count.
    pub(crate) fn finish(self) -> (Array1<f32>, Option<usize>) {
        match self.kind {
            Labels::Regression => (Array1::from(self.raw), None),
            Labels::Index => {
                let max = self.raw.iter().fold(0usize, |m, &v| m.max(v as usize));
                let k = (max + 1).max(self.min_classes.unwrap_or(0)).max(2);
                (Array1::from(self.raw), Some(k))
            }
            Labels::Sorted => {
                let mut distinct = self.raw.clone();
                distinct.sort_by(f32::total_cmp);
                distinct.dedup();
                let targets = self
                    .raw
                    .iter()
                    .map(|v| distinct.partition_point(|d| d < v) as f32)
                    .collect();
                let k = distinct.len().max(self.min_classes.unwrap_or(0)).max(2);
                (targets, Some(k))
            }
        }
    }
}

/// Loads a delimited text file (optionally gzip-compressed), one sample per line.
///
/// Blank lines and lines starting with `#` are skipped. Every row must have as many fields as
/// the first; the label column is chosen by [`CsvOptions::label_column`].
pub fn load_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let text = utf8(path, read_maybe_gzip(path)?)?;
    parse_csv(path, &text, options)
}

pub(crate) fn parse_csv(
    path: &Path,
    text: &str,
    options: &CsvOptions,
) -> Result<Dataset, DataError> {
    let mut features: Vec<f32> = Vec::new();
    let mut labels = LabelReader::new(options.labels, options.classes);
    let mut width: Option<usize> = None;
    let mut skipped_header = !options.header;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !skipped_header {
            skipped_header = true;
            continue;
        }
        let found = line.split(options.delimiter).count();
        let expected = *width.get_or_insert(found);
        if found != expected {
            return Err(DataError::Ragged {
                path: path.to_path_buf(),
                line: line_no,
                expected,
                found,
            });
        }
        let label_col = if options.label_column < 0 {
            expected as i64 + options.label_column
        } else {
            options.label_column
        };
        if label_col < 0 || label_col as usize >= expected || expected < 2 {
            return Err(DataError::parse(
                path,
                line_no,
                1,
                line,
                format!(
                    "label column {} does not exist in a row of {expected} fields (need a label and at least one feature)",
                    options.label_column
                ),
            ));
        }
        let label_col = label_col as usize;
        for (col, field) in line.split(options.delimiter).enumerate() {
            if col == label_col {
                labels.push(path, line_no, col + 1, field)?;
                continue;
            }
            let v: f32 = field.trim().parse().map_err(|_| {
                DataError::parse(path, line_no, col + 1, field, "expected a number")
            })?;
            if !v.is_finite() {
                return Err(DataError::parse(
                    path,
                    line_no,
                    col + 1,
                    field,
                    "feature is not finite",
                ));
            }
            features.push(v * options.scale);
        }
    }
    let Some(width) = width else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    };
    let (targets, classes) = labels.finish();
    let features = Array2::from_shape_vec((targets.len(), width - 1), features)
        .map_err(|e| DataError::Shape(e.to_string()))?;
    Dataset::new(features, targets, classes)
}
