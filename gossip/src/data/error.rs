//! What can go wrong reading or building a dataset. Text formats name the 1-based line and
//! column of the offending field; binary formats name the byte offset.

use std::path::PathBuf;

/// A dataset could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (or a gzip stream is corrupt).
    #[error("{path}: {source}")]
    Io {
        /// File being read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A field is not a number (or not the expected `index:value` pair).
    #[error("{path}:{line}:{column}: cannot read {text:?}: {reason}")]
    Parse {
        /// File being read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column: field number for CSV, token number for LIBSVM.
        column: usize,
        /// The offending text (truncated to 40 characters).
        text: String,
        /// What was expected.
        reason: String,
    },
    /// A row has a different number of fields from the first row.
    #[error("{path}:{line}: expected {expected} fields, found {found}")]
    Ragged {
        /// File being read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Fields in the first data row.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// The file holds no samples.
    #[error("{path}: no samples")]
    Empty {
        /// File being read.
        path: PathBuf,
    },
    /// A binary (IDX) file is malformed.
    #[error("{path}: byte {offset}: {reason}")]
    Binary {
        /// File being read.
        path: PathBuf,
        /// Byte offset of the problem in the (decompressed) file.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Shapes or labels do not fit together (rows vs targets, images vs labels, ...).
    #[error("inconsistent dataset: {0}")]
    Shape(String),
}

impl DataError {
    pub(crate) fn parse(
        path: &std::path::Path,
        line: usize,
        column: usize,
        text: &str,
        reason: impl Into<String>,
    ) -> Self {
        DataError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            text: text.chars().take(40).collect(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
