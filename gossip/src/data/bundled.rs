//! Datasets compiled into the binary, so every driver has real data with no path given.
//! Sources and licence: `gossip/data/LICENCE.md` (UCI via scikit-learn, CC BY 4.0).

use std::path::Path;
use std::sync::OnceLock;

use super::Dataset;
use super::text::{CsvOptions, Labels, gunzip_if_needed, parse_csv, utf8};

static DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
static BREAST_CANCER_CSV: &str = include_str!("../../data/breast_cancer.csv");

/// The UCI optical digits: 1797 images of 8×8 pixels, 10 classes. Pixels are scaled from
/// 0..16 to 0..1.
pub fn digits() -> Dataset {
    static CACHE: OnceLock<Dataset> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let path = Path::new("<bundled digits.csv.gz>");
            let text = utf8(
                path,
                gunzip_if_needed(path, DIGITS_GZ.to_vec()).expect("bundled gzip"),
            )
            .expect("bundled digits are UTF-8");
            let options = CsvOptions {
                scale: 1.0 / 16.0,
                classes: Some(10),
                ..CsvOptions::default()
            };
            parse_csv(path, &text, &options).expect("bundled digits parse")
        })
        .clone()
}

/// The Wisconsin diagnostic breast cancer set: 569 samples, 30 real features (raw scale:
/// standardise before training), 2 classes (0 = malignant, 1 = benign).
pub fn breast_cancer() -> Dataset {
    static CACHE: OnceLock<Dataset> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let options = CsvOptions {
                header: true,
                labels: Labels::Index,
                classes: Some(2),
                ..CsvOptions::default()
            };
            parse_csv(
                Path::new("<bundled breast_cancer.csv>"),
                BREAST_CANCER_CSV,
                &options,
            )
            .expect("bundled breast cancer parses")
        })
        .clone()
}
