//! Loaders (good files and malformed ones, with line/column in the error), bundled data,
//! split and standardisation.

use std::io::Write;
use std::path::PathBuf;

use murmur_gossip::data::{
    self, CsvOptions, DataError, Dataset, Labels, LibsvmOptions, Standardizer,
};

/// A file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("murmur-core-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn parse_error(err: DataError) -> (usize, usize, String) {
    match err {
        DataError::Parse {
            line, column, text, ..
        } => (line, column, text),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn csv_plain_and_gzip_read_the_same() {
    let text = b"a,b,label\n1,2,0\n3.5,-4,2\n\n# comment\n5,6e-1,1\n";
    let options = CsvOptions {
        header: true,
        ..CsvOptions::default()
    };
    let plain = TempFile::new("plain.csv", text);
    let gz = TempFile::new("gz.csv.gz", &gzip(text));
    let a = data::load_csv(&plain.0, &options).unwrap();
    let b = data::load_csv(&gz.0, &options).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.len(), a.dim(), a.classes), (3, 2, Some(3)));
    assert_eq!(a.features.row(1).to_vec(), vec![3.5, -4.0]);
    assert_eq!(a.features[[2, 1]], 0.6);
    assert_eq!(a.targets.to_vec(), vec![0.0, 2.0, 1.0]);

    // Label in the first column, semicolons, sorted labels, scaling.
    let other = TempFile::new("first.csv", b"-1;10;20\n1;30;40\n");
    let d = data::load_csv(
        &other.0,
        &CsvOptions {
            label_column: 0,
            delimiter: ';',
            labels: Labels::Sorted,
            scale: 0.1,
            ..CsvOptions::default()
        },
    )
    .unwrap();
    assert_eq!(d.targets.to_vec(), vec![0.0, 1.0]);
    assert_eq!(d.features.row(1).to_vec(), vec![3.0, 4.0]);
    let r = data::load_csv(
        &other.0,
        &CsvOptions {
            label_column: 0,
            delimiter: ';',
            labels: Labels::Regression,
            ..CsvOptions::default()
        },
    )
    .unwrap();
    assert_eq!((r.classes, r.targets.to_vec()), (None, vec![-1.0, 1.0]));
}

#[test]
fn csv_errors_name_line_and_column() {
    let cases: [(&[u8], CsvOptions, (usize, usize)); 4] = [
        (b"1,2,0\n3,x,1\n", CsvOptions::default(), (2, 2)),
        (b"1,2,0\n3,4,1.5\n", CsvOptions::default(), (2, 3)),
        (b"1,2,0\n\n3,4,-1\n", CsvOptions::default(), (3, 3)),
        (
            b"1,2,0\n3,4,7\n",
            CsvOptions {
                classes: Some(5),
                ..CsvOptions::default()
            },
            (2, 3),
        ),
    ];
    for (i, (text, options, want)) in cases.into_iter().enumerate() {
        let f = TempFile::new(&format!("bad{i}.csv"), text);
        let err = data::load_csv(&f.0, &options).unwrap_err();
        let msg = err.to_string();
        let (line, column, _) = parse_error(err);
        assert_eq!((line, column), want, "case {i}: {msg}");
        assert!(msg.contains(&format!(":{}:{}:", want.0, want.1)), "{msg}");
    }
    let ragged = TempFile::new("ragged.csv", b"1,2,0\n1,2,3,0\n");
    match data::load_csv(&ragged.0, &CsvOptions::default()).unwrap_err() {
        DataError::Ragged {
            line: 2,
            expected: 3,
            found: 4,
            ..
        } => {}
        other => panic!("{other}"),
    }
    let empty = TempFile::new("empty.csv", b"\n# nothing\n");
    assert!(matches!(
        data::load_csv(&empty.0, &CsvOptions::default()),
        Err(DataError::Empty { .. })
    ));
    let corrupt = TempFile::new("corrupt.csv.gz", &gzip(b"1,2,0\n")[..12]);
    assert!(matches!(
        data::load_csv(&corrupt.0, &CsvOptions::default()),
        Err(DataError::Io { .. })
    ));
    let missing = std::env::temp_dir().join("murmur-core-does-not-exist.csv");
    assert!(matches!(
        data::load_csv(&missing, &CsvOptions::default()),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn libsvm_good_file() {
    let text = b"+1 1:0.5 3:-2 # first\n-1 qid:3 2:1.25\n\n+1 4:3e0\n";
    let f = TempFile::new("good.svm", text);
    let d = data::load_libsvm(&f.0, &LibsvmOptions::default()).unwrap();
    assert_eq!((d.len(), d.dim(), d.classes), (3, 4, Some(2)));
    assert_eq!(d.targets.to_vec(), vec![1.0, 0.0, 1.0]);
    assert_eq!(d.features.row(0).to_vec(), vec![0.5, 0.0, -2.0, 0.0]);
    assert_eq!(d.features.row(1).to_vec(), vec![0.0, 1.25, 0.0, 0.0]);
    let gz = TempFile::new("good.svm.gz", &gzip(text));
    let wide = data::load_libsvm(
        &gz.0,
        &LibsvmOptions {
            features: Some(6),
            ..LibsvmOptions::default()
        },
    )
    .unwrap();
    assert_eq!(wide.dim(), 6);
    let zero = data::load_libsvm(
        &f.0,
        &LibsvmOptions {
            zero_based: true,
            ..LibsvmOptions::default()
        },
    )
    .unwrap();
    assert_eq!(zero.features[[0, 1]], 0.5);
}

#[test]
fn libsvm_errors_name_line_and_field() {
    let cases: [(&[u8], LibsvmOptions, (usize, usize)); 6] = [
        (b"1 1:2\nabc 1:2\n", LibsvmOptions::default(), (2, 1)),
        (b"1 1:2 3\n", LibsvmOptions::default(), (1, 3)),
        (b"1 1:2\n1 2:1 0:3\n", LibsvmOptions::default(), (2, 3)),
        (b"1 2:1 2:3\n", LibsvmOptions::default(), (1, 3)),
        (b"1 1:2\n0 1:2 2:nan?\n", LibsvmOptions::default(), (2, 3)),
        (
            b"1 1:2 9:1\n",
            LibsvmOptions {
                features: Some(4),
                ..LibsvmOptions::default()
            },
            (1, 3),
        ),
    ];
    for (i, (text, options, want)) in cases.into_iter().enumerate() {
        let f = TempFile::new(&format!("bad{i}.svm"), text);
        let err = data::load_libsvm(&f.0, &options).unwrap_err();
        let msg = err.to_string();
        let (line, column, _) = parse_error(err);
        assert_eq!((line, column), want, "case {i}: {msg}");
    }
}

/// An IDX file of unsigned bytes with the given dimensions.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[test]
fn idx_good_files_plain_and_gzip() {
    let pixels: Vec<u8> = (0..3 * 2 * 2).map(|v| (v * 20) as u8).collect();
    let images = TempFile::new("img.idx", &idx(&[3, 2, 2], &pixels));
    let labels = TempFile::new("lbl.idx.gz", &gzip(&idx(&[3], &[7, 0, 3])));
    let d = data::load_idx(&images.0, &labels.0).unwrap();
    assert_eq!((d.len(), d.dim(), d.classes), (3, 4, Some(10)));
    assert_eq!(d.targets.to_vec(), vec![7.0, 0.0, 3.0]);
    assert_eq!(d.features[[1, 0]], 80.0 / 255.0);
}

#[test]
fn idx_malformed_files_are_named_errors() {
    let good_labels = TempFile::new("lbl2.idx", &idx(&[2], &[1, 2]));
    let cases: [(Vec<u8>, usize); 5] = [
        (vec![1, 2, 8, 3], 0),                       // bad magic
        (idx(&[2, 2, 2], &[0; 8])[..6].to_vec(), 6), // header cut short
        (idx(&[2, 2, 2], &[0; 7]), 23),              // one pixel missing
        (
            {
                let mut v = idx(&[2, 2, 2], &[0; 8]);
                v[2] = 0x0d;
                v
            },
            2,
        ), // float type
        (idx(&[2, 4], &[0; 8]), 3),                  // 2 dimensions
    ];
    for (i, (bytes, want)) in cases.into_iter().enumerate() {
        let f = TempFile::new(&format!("badimg{i}.idx"), &bytes);
        match data::load_idx(&f.0, &good_labels.0).unwrap_err() {
            DataError::Binary { offset, .. } => assert_eq!(offset, want, "case {i}"),
            other => panic!("case {i}: {other}"),
        }
    }
    let images = TempFile::new("img3.idx", &idx(&[3, 2, 2], &[0; 12]));
    assert!(matches!(
        data::load_idx(&images.0, &good_labels.0),
        Err(DataError::Shape(_))
    ));
}

#[test]
fn bundled_sets_are_intact() {
    let d = data::digits();
    assert_eq!((d.len(), d.dim(), d.classes), (1797, 64, Some(10)));
    assert!(d.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(d.class_counts().iter().all(|&c| (170..=190).contains(&c)));
    let b = data::breast_cancer();
    assert_eq!((b.len(), b.dim(), b.classes), (569, 30, Some(2)));
    assert_eq!(b.class_counts(), vec![212, 357]);
}

#[test]
fn split_is_seeded_disjoint_and_order_keeping() {
    let d = data::digits();
    let (train, test) = d.train_test_split(0.25, 7);
    assert_eq!((train.len(), test.len()), (1348, 449));
    assert_eq!(d.train_test_split(0.25, 7).1, test);
    assert_ne!(d.train_test_split(0.25, 8).1, test);
    // Tag each sample by its position to check disjointness and order.
    let n = 50;
    let tagged = Dataset::new(
        ndarray::Array2::from_shape_fn((n, 1), |(i, _)| i as f32),
        ndarray::Array1::zeros(n),
        None,
    )
    .unwrap();
    let (a, b) = tagged.train_test_split(0.3, 1);
    let (ia, ib): (Vec<f32>, Vec<f32>) =
        (a.features.column(0).to_vec(), b.features.column(0).to_vec());
    assert!(ia.windows(2).all(|w| w[0] < w[1]) && ib.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<f32> = ia.iter().chain(&ib).copied().collect();
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..n).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn standardizer_fits_train_and_maps_test_alike() {
    let (mut train, mut test) = data::breast_cancer().train_test_split(0.2, 0);
    let s = Standardizer::fit(&train);
    let raw_test = test.clone();
    s.apply(&mut train);
    s.apply(&mut test);
    for col in train.features.columns() {
        let n = col.len() as f64;
        let mean = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = col
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "mean {mean} var {var}"
        );
    }
    let (i, j) = (3, 5);
    let expected = (raw_test.features[[i, j]] - s.mean[j]) / s.std[j];
    assert!((test.features[[i, j]] - expected).abs() < 1e-5);
    // A constant column maps to 0, not NaN.
    let mut digits = data::digits();
    Standardizer::fit(&digits).apply(&mut digits);
    assert!(digits.features.iter().all(|v| v.is_finite()));
    assert!(digits.features.column(0).iter().all(|&v| v == 0.0));
}

#[test]
fn sampler_visits_every_sample_once_per_epoch_and_is_seeded() {
    use murmur_gossip::data::MinibatchSampler;
    let (n, b) = (10, 4);
    let mut s = MinibatchSampler::new(n, b, 3);
    let drawn: Vec<usize> = (0..5).flat_map(|_| s.next_batch().to_vec()).collect();
    // 20 draws = two full permutations of 0..10.
    for epoch in drawn.chunks(n) {
        let mut e = epoch.to_vec();
        e.sort_unstable();
        assert_eq!(e, (0..n).collect::<Vec<_>>());
    }
    assert_ne!(drawn[..n], drawn[n..], "each epoch reshuffles");
    assert_eq!(s.epochs(), 1);
    let mut again = MinibatchSampler::new(n, b, 3);
    let same: Vec<usize> = (0..5).flat_map(|_| again.next_batch().to_vec()).collect();
    assert_eq!(same, drawn);
    let mut other = MinibatchSampler::new(n, b, 4);
    let differ: Vec<usize> = (0..5).flat_map(|_| other.next_batch().to_vec()).collect();
    assert_ne!(differ, drawn);
    // Resume mid-epoch.
    let mut resumed = MinibatchSampler::new(n, b, 99);
    resumed.restore(s.state()).unwrap();
    assert_eq!(resumed.next_batch(), s.next_batch());
    // A batch larger than the data is capped.
    assert_eq!(MinibatchSampler::new(3, 8, 0).batch_size(), 3);
}

#[test]
fn csv_task_with_separate_test_file() {
    use murmur_gossip::task::TaskConfig;
    let train = TempFile::new(
        "task-train.csv",
        b"0,0,0\n0,1,0\n5,5,1\n6,5,1\n5,6,1\n0,0.5,0\n",
    );
    let test = TempFile::new("task-test.csv", b"0,0.2,0\n6,6,1\n");
    let text = format!(
        "model = \"logistic\"\nbatch_size = 2\nepochs = 40\nstandardize = true\n[data]\nkind = \"csv\"\npath = {:?}\ntest_path = {:?}\n",
        train.0, test.0
    );
    let task: TaskConfig = toml::from_str(&text).unwrap();
    let prepared = task.prepare().unwrap();
    assert_eq!(
        (
            prepared.train().len(),
            prepared.test().len(),
            prepared.dim()
        ),
        (6, 2, 3)
    );
    let last = *prepared.centralized().run(|_| {}).last().unwrap();
    assert_eq!(last.test.accuracy, Some(1.0));
    // A malformed test file surfaces as the data error with its position.
    let bad = TempFile::new("task-bad.csv", b"0,0,0\n1,z,1\n");
    let text = text.replace(&format!("{:?}", test.0), &format!("{:?}", bad.0));
    let err = toml::from_str::<TaskConfig>(&text)
        .unwrap()
        .prepare()
        .unwrap_err();
    assert!(err.to_string().contains(":2:2:"), "{err}");
}

#[test]
fn libsvm_task_maps_test_labels_through_the_training_values() {
    use murmur_gossip::task::TaskConfig;
    // Training labels {-1, 3, 7}; the test file only has 7 and -1: it must get classes 2 and 0
    // (mapping the test file on its own would give 1 and 0).
    let train = TempFile::new("svm-train.txt", b"-1 1:0\n3 1:1\n7 1:2\n-1 1:0.1\n");
    let test = TempFile::new("svm-test.txt", b"7 1:2\n-1 1:0\n");
    let text = format!(
        "model = \"softmax\"\n[data]\nkind = \"libsvm\"\npath = {:?}\ntest_path = {:?}\n",
        train.0, test.0
    );
    let prepared = toml::from_str::<TaskConfig>(&text)
        .unwrap()
        .prepare()
        .unwrap();
    assert_eq!(prepared.train().targets.to_vec(), vec![0.0, 1.0, 2.0, 0.0]);
    assert_eq!(prepared.test().targets.to_vec(), vec![2.0, 0.0]);
    assert_eq!(prepared.test().classes, Some(3));
    let unseen = TempFile::new("svm-unseen.txt", b"5 1:2\n");
    let text = text.replace(&format!("{:?}", test.0), &format!("{:?}", unseen.0));
    let err = toml::from_str::<TaskConfig>(&text)
        .unwrap()
        .prepare()
        .unwrap_err();
    assert!(err.to_string().contains("test label 5"), "{err}");
}

#[test]
fn csv_task_rejects_a_test_file_with_another_feature_count() {
    use murmur_gossip::task::TaskConfig;
    let train = TempFile::new("shape-train.csv", b"0,0,0\n5,5,1\n0,1,0\n");
    let good = TempFile::new("shape-good.csv", b"0,0.5,0\n6,5,1\n");
    let wide = TempFile::new("shape-wide.csv", b"0,0,0,0\n5,5,5,1\n");
    let text = |test: &TempFile| {
        format!(
            "model = \"logistic\"\n[data]\nkind = \"csv\"\npath = {:?}\ntest_path = {:?}\n",
            train.0, test.0
        )
    };
    let prepared = toml::from_str::<TaskConfig>(&text(&good))
        .unwrap()
        .prepare()
        .unwrap();
    assert_eq!((prepared.train().dim(), prepared.test().dim()), (2, 2));
    assert_eq!(prepared.test().targets.to_vec(), vec![0.0, 1.0]);
    let err = toml::from_str::<TaskConfig>(&text(&wide))
        .unwrap()
        .prepare()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task config: test file has 3 features and Some(2) classes, training file 2 and Some(2)"
    );
}

#[test]
fn libsvm_task_pins_the_test_file_to_the_training_shape() {
    use murmur_gossip::task::TaskConfig;
    let train = TempFile::new("svm-shape-train.txt", b"0 1:0 2:1\n1 1:5 2:5\n2 2:3\n");
    // A test file that never uses feature 2 still has the training file's two features.
    let narrow = TempFile::new("svm-shape-narrow.txt", b"1 1:5\n0 1:0\n");
    // One with a third feature is rejected where it names it.
    let wide = TempFile::new("svm-shape-wide.txt", b"0 1:0\n1 1:5 3:1\n");
    // With index labels the class count is pinned too: a fourth class is rejected where it is.
    let more = TempFile::new("svm-shape-classes.txt", b"3 1:1\n");
    let text = |test: &TempFile, labels: &str| {
        format!(
            "model = \"softmax\"\n[data]\nkind = \"libsvm\"\npath = {:?}\ntest_path = {:?}\n[data.options]\nlabels = \"{labels}\"\n",
            train.0, test.0
        )
    };
    let prepare = |test: &TempFile, labels: &str| {
        toml::from_str::<TaskConfig>(&text(test, labels))
            .unwrap()
            .prepare()
    };
    for labels in ["sorted", "index"] {
        let prepared = prepare(&narrow, labels).unwrap();
        assert_eq!((prepared.train().dim(), prepared.test().dim()), (2, 2));
        assert_eq!(prepared.test().targets.to_vec(), vec![1.0, 0.0]);
        assert_eq!(prepared.test().classes, Some(3));
        let err = prepare(&wide, labels).unwrap_err().to_string();
        assert!(
            err.contains(":2:3: cannot read \"3:1\": index beyond the 2 features"),
            "{err}"
        );
    }
    let err = prepare(&more, "index").unwrap_err().to_string();
    assert!(
        err.contains(":1:1: cannot read \"3\": class index must be below 3"),
        "{err}"
    );
}
