//! Stand-in for the learning core while `murmur_gossip::{data, model, train}` are being written:
//! the bundled digits (8×8 images, 10 classes), a seeded Dirichlet partitioner and a softmax
//! regression learner with minibatch SGD and a cosine learning-rate schedule. The peer tests
//! only need the `LocalLearner` trait, so swapping in the core's `SgdLearner` changes nothing
//! else.

use std::io::Read;
use std::sync::Arc;

use murmur_gossip::learner::{Evaluation, LocalLearner};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

pub const FEATURES: usize = 64;
pub const CLASSES: usize = 10;
/// Softmax regression: a weight per (class, feature) plus a bias per class.
pub const DIM: usize = FEATURES * CLASSES + CLASSES;

#[derive(Debug, Clone, Default)]
pub struct Digits {
    pub x: Vec<[f32; FEATURES]>,
    pub y: Vec<u8>,
}

impl Digits {
    fn subset(&self, ids: &[usize]) -> Digits {
        Digits {
            x: ids.iter().map(|&i| self.x[i]).collect(),
            y: ids.iter().map(|&i| self.y[i]).collect(),
        }
    }
}

/// The bundled digits, pixels scaled to [0, 1], split 80/20 into (train, test) with a seed.
pub fn load(seed: u64) -> (Digits, Digits) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("bundled digits"))
        .read_to_string(&mut text)
        .expect("digits.csv.gz decompresses");
    let mut all = Digits::default();
    for line in text.lines() {
        let v: Vec<f32> = line.split(',').map(|t| t.parse().unwrap()).collect();
        let mut x = [0f32; FEATURES];
        for (k, p) in x.iter_mut().enumerate() {
            *p = v[k] / 16.0;
        }
        all.x.push(x);
        all.y.push(v[FEATURES] as u8);
    }
    let mut order: Vec<usize> = (0..all.y.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = all.y.len() / 5;
    (all.subset(&order[n_test..]), all.subset(&order[..n_test]))
}

/// Label-skewed shards: for every class, proportions over the peers drawn from Dirichlet(α).
pub fn dirichlet_shards(data: &Digits, peers: usize, alpha: f64, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gamma = Gamma::new(alpha, 1.0).unwrap();
    let mut shards = vec![Vec::new(); peers];
    for class in 0..CLASSES as u8 {
        let ids: Vec<usize> = (0..data.y.len()).filter(|&i| data.y[i] == class).collect();
        let w: Vec<f64> = (0..peers).map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = w.iter().sum();
        let (mut cum, mut start) = (0.0, 0);
        for (p, shard) in shards.iter_mut().enumerate() {
            cum += w[p] / total;
            let end = if p == peers - 1 {
                ids.len()
            } else {
                ((cum * ids.len() as f64).round() as usize).max(start)
            };
            shard.extend_from_slice(&ids[start..end]);
            start = end;
        }
    }
    shards
}

/// Softmax regression trained by minibatch SGD on a shard (indices into `train`).
#[derive(Debug, Clone)]
pub struct Softmax {
    pub train: Arc<Digits>,
    pub shard: Vec<usize>,
    pub test: Arc<Digits>,
    pub lr: f32,
    pub batch: usize,
    /// Total local steps of the run, for the cosine schedule (0: constant rate).
    pub total_steps: u64,
    pub steps: u64,
    pub rng: ChaCha8Rng,
}

fn logits(p: &[f32], x: &[f32; FEATURES]) -> [f32; CLASSES] {
    let mut z = [0f32; CLASSES];
    for (c, zc) in z.iter_mut().enumerate() {
        let w = &p[c * FEATURES..(c + 1) * FEATURES];
        *zc = p[FEATURES * CLASSES + c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
    }
    z
}

impl Softmax {
    pub fn new(train: Arc<Digits>, shard: Vec<usize>, test: Arc<Digits>, seed: u64) -> Self {
        Softmax {
            train,
            shard,
            test,
            lr: 0.2,
            batch: 16,
            total_steps: 0,
            steps: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn accuracy(&self, params: &[f32]) -> f32 {
        self.evaluate(params).accuracy.unwrap()
    }
}

impl LocalLearner for Softmax {
    fn dim(&self) -> usize {
        DIM
    }

    fn step(&mut self, p: &mut [f32]) -> f32 {
        let mut grad = vec![0f32; DIM];
        let mut loss = 0.0;
        for _ in 0..self.batch {
            let i = self.shard[self.rng.random_range(0..self.shard.len())];
            let (x, y) = (&self.train.x[i], self.train.y[i] as usize);
            let z = logits(p, x);
            let m = z.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            loss -= (e[y] / s).ln();
            for c in 0..CLASSES {
                let d = e[c] / s - f32::from(u8::from(c == y));
                for (g, xk) in grad[c * FEATURES..(c + 1) * FEATURES].iter_mut().zip(x) {
                    *g += d * xk;
                }
                grad[FEATURES * CLASSES + c] += d;
            }
        }
        let frac = if self.total_steps == 0 {
            0.0
        } else {
            (self.steps as f64 / self.total_steps as f64).min(1.0)
        };
        let lr = self.lr * (0.5 * (1.0 + (std::f64::consts::PI * frac).cos())) as f32;
        self.steps += 1;
        let b = self.batch as f32;
        for (w, g) in p.iter_mut().zip(&grad) {
            *w -= lr * (g / b + 1e-4 * *w);
        }
        loss / b
    }

    fn evaluate(&self, p: &[f32]) -> Evaluation {
        let correct = self
            .test
            .x
            .iter()
            .zip(&self.test.y)
            .filter(|(x, y)| {
                let z = logits(p, x);
                (0..CLASSES).max_by(|a, b| z[*a].total_cmp(&z[*b])) == Some(**y as usize)
            })
            .count();
        Evaluation {
            loss: 0.0,
            accuracy: Some(correct as f32 / self.test.y.len() as f32),
        }
    }

    fn save_state(&self) -> Vec<u8> {
        self.steps.to_le_bytes().to_vec()
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| "expected 8 bytes".to_string())?;
        self.steps = u64::from_le_bytes(b);
        Ok(())
    }
}

/// The centralized reference: the same model and optimizer on the whole training set.
pub fn centralized_accuracy(train: &Arc<Digits>, test: &Arc<Digits>, steps: u64) -> f32 {
    let mut learner = Softmax::new(train.clone(), (0..train.y.len()).collect(), test.clone(), 0);
    learner.batch = 64;
    learner.total_steps = steps;
    let mut p = vec![0f32; DIM];
    for _ in 0..steps {
        learner.step(&mut p);
    }
    learner.accuracy(&p)
}
