//! MNIST IDX files (LeCun et al.): a big-endian header `0x00 0x00 type ndims`, `ndims` u32
//! sizes, then the data. Images are `ubyte` with 3 dimensions (n × rows × cols), labels
//! `ubyte` with 1; both may be gzip-compressed. Pixels are scaled to 0..1.

use std::path::Path;

use ndarray::{Array1, Array2};

use super::text::read_maybe_gzip;
use super::{DataError, Dataset};

const UBYTE: u8 = 0x08;

/// Reads an IDX header; returns the dimension sizes and the data offset.
fn header(path: &Path, bytes: &[u8], want_dims: u8) -> Result<(Vec<usize>, usize), DataError> {
    let err = |offset: usize, reason: String| DataError::Binary {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < 4 {
        return Err(err(
            0,
            format!("file of {} bytes has no IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            0,
            format!(
                "bad magic {:02x}{:02x}: not an IDX file",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != UBYTE {
        return Err(err(
            2,
            format!(
                "element type 0x{:02x} is not unsigned byte (0x08)",
                bytes[2]
            ),
        ));
    }
    if bytes[3] != want_dims {
        return Err(err(
            3,
            format!("{} dimensions, expected {want_dims}", bytes[3]),
        ));
    }
    let start = 4 + 4 * usize::from(want_dims);
    if bytes.len() < start {
        return Err(err(bytes.len(), "header truncated".into()));
    }
    let dims: Vec<usize> = (0..usize::from(want_dims))
        .map(|k| {
            let b = &bytes[4 + 4 * k..8 + 4 * k];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match expected {
        Some(len) if bytes.len() - start == len => Ok((dims, start)),
        Some(len) => Err(err(
            bytes.len(),
            format!(
                "header promises {len} data bytes, file has {}",
                bytes.len() - start
            ),
        )),
        None => Err(err(4, "dimension sizes overflow".into())),
    }
}

/// Loads an IDX image file and its label file into a 10-class (or more, if labels say so)
/// dataset with `rows × cols` features scaled to 0..1.
pub fn load_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    parse_idx(
        images,
        &read_maybe_gzip(images)?,
        labels,
        &read_maybe_gzip(labels)?,
    )
}

/// [`load_idx`] on bytes already read (and gunzipped); the paths only name them in errors.
pub(crate) fn parse_idx(
    images: &Path,
    image_bytes: &[u8],
    labels: &Path,
    label_bytes: &[u8],
) -> Result<Dataset, DataError> {
    let (dims, start) = header(images, image_bytes, 3)?;
    let (ldims, lstart) = header(labels, label_bytes, 1)?;
    let (n, pixels) = (dims[0], dims[1] * dims[2]);
    if ldims[0] != n {
        return Err(DataError::Shape(format!(
            "{} has {n} images but {} has {} labels",
            images.display(),
            labels.display(),
            ldims[0]
        )));
    }
    if n == 0 || pixels == 0 {
        return Err(DataError::Empty {
            path: images.to_path_buf(),
        });
    }
    let features = Array2::from_shape_vec(
        (n, pixels),
        image_bytes[start..]
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect(),
    )
    .map_err(|e| DataError::Shape(e.to_string()))?;
    let raw = &label_bytes[lstart..];
    let classes = usize::from(raw.iter().copied().max().unwrap_or(0)) + 1;
    let targets: Array1<f32> = raw.iter().map(|&b| f32::from(b)).collect();
    Dataset::new(features, targets, Some(classes.max(10)))
}
