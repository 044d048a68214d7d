//! A seeded mutator that turns valid frames into hostile ones.
//!
//! Every decoder in murmur reads untrusted bytes: codec payloads, gossip messages and
//! checkpoint files. [`Mutator`] draws one [`Mutation`] per call and applies it to a frame from
//! a corpus of valid ones, so most outputs are *almost* valid (they get past the first checks
//! and reach the deep ones) while some are plain noise. Postcard, which every envelope uses,
//! writes lengths and integers as LEB128 varints, so [`Mutation::InflateVarint`] writes the
//! largest varints there are where a length may sit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One way of damaging a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// 1 to 8 random bits flipped.
    BitFlip,
    /// 1 to 4 bytes set to boundary values (0x00, 0x01, 0x7f, 0x80, 0xff) or random ones.
    ByteSet,
    /// Cut at a random length (possibly empty).
    Truncate,
    /// 1 to 64 random bytes appended.
    Extend,
    /// A maximal varint (`ff ff ff ff ff ff ff ff ff 01`, or a 5-byte u32 one) written over or
    /// inserted at a random position: length fields claim gigabytes.
    InflateVarint,
    /// A random run of bytes removed.
    DeleteRun,
    /// A random run of bytes repeated in place.
    DuplicateRun,
    /// The head of one valid frame joined to the tail of another.
    Splice,
    /// Uniformly random bytes of a random length.
    RandomBytes,
    /// The frame unchanged (a valid frame must still be accepted or rejected cleanly, and a
    /// replay of it is a hostile act of its own).
    Replay,
}

impl Mutation {
    /// Every mutation, in draw order.
    pub const ALL: [Mutation; 10] = [
        Mutation::BitFlip,
        Mutation::ByteSet,
        Mutation::Truncate,
        Mutation::Extend,
        Mutation::InflateVarint,
        Mutation::DeleteRun,
        Mutation::DuplicateRun,
        Mutation::Splice,
        Mutation::RandomBytes,
        Mutation::Replay,
    ];
}

/// Seeded frame mutator (see the module docs).
#[derive(Debug)]
pub struct Mutator {
    rng: ChaCha8Rng,
    /// Cumulative draw weights, one per [`Mutation::ALL`] entry.
    weights: [u32; 10],
}

impl Mutator {
    /// A mutator whose every choice flows from `seed`.
    pub fn new(seed: u64) -> Self {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            // Mostly structure-preserving damage (reaches deep checks), some noise, few replays.
            weights: [20, 14, 12, 6, 14, 8, 6, 10, 8, 2],
        }
    }

    /// The mutator's generator, for callers that draw their own structured damage.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Picks a frame of `corpus` and returns a damaged copy and what was done to it.
    ///
    /// # Panics
    /// If `corpus` is empty.
    pub fn next(&mut self, corpus: &[Vec<u8>]) -> (Vec<u8>, Mutation) {
        assert!(!corpus.is_empty(), "the corpus needs at least one frame");
        let base = &corpus[self.rng.random_range(0..corpus.len())];
        let total: u32 = self.weights.iter().sum();
        let mut pick = self.rng.random_range(0..total);
        let mut mutation = Mutation::Replay;
        for (m, w) in Mutation::ALL.iter().zip(self.weights) {
            if pick < w {
                mutation = *m;
                break;
            }
            pick -= w;
        }
        let frame = match mutation {
            Mutation::Splice => {
                let other = &corpus[self.rng.random_range(0..corpus.len())];
                let head = self.rng.random_range(0..=base.len());
                let tail = self.rng.random_range(0..=other.len());
                let mut out = base[..head].to_vec();
                out.extend_from_slice(&other[tail..]);
                out
            }
            m => self.apply(base, m),
        };
        (frame, mutation)
    }

    /// Applies `mutation` to `frame` ([`Mutation::Splice`] splices the frame with itself).
    pub fn apply(&mut self, frame: &[u8], mutation: Mutation) -> Vec<u8> {
        let rng = &mut self.rng;
        let mut out = frame.to_vec();
        match mutation {
            Mutation::BitFlip => {
                if !out.is_empty() {
                    for _ in 0..rng.random_range(1..=8) {
                        let bit = rng.random_range(0..out.len() * 8);
                        out[bit / 8] ^= 1 << (bit % 8);
                    }
                }
            }
            Mutation::ByteSet => {
                if !out.is_empty() {
                    for _ in 0..rng.random_range(1..=4) {
                        let at = rng.random_range(0..out.len());
                        out[at] = match rng.random_range(0..6) {
                            0 => 0x00,
                            1 => 0x01,
                            2 => 0x7f,
                            3 => 0x80,
                            4 => 0xff,
                            _ => rng.random(),
                        };
                    }
                }
            }
            Mutation::Truncate => {
                let keep = rng.random_range(0..=out.len());
                out.truncate(keep);
            }
            Mutation::Extend => {
                for _ in 0..rng.random_range(1..=64) {
                    out.push(rng.random());
                }
            }
            Mutation::InflateVarint => {
                let varint: &[u8] = if rng.random_bool(0.5) {
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
                } else {
                    &[0xff, 0xff, 0xff, 0xff, 0x0f]
                };
                // Early positions hold the envelope's headers and lengths: favour them.
                let limit = out
                    .len()
                    .min(if rng.random_bool(0.7) { 24 } else { usize::MAX });
                let at = rng.random_range(0..=limit);
                if rng.random_bool(0.5) {
                    // Overwrite the varint that starts at `at` (its continuation bytes too).
                    let mut end = at;
                    while end < out.len() && out[end] & 0x80 != 0 {
                        end += 1;
                    }
                    let end = (end + 1).min(out.len());
                    out.splice(at..end, varint.iter().copied());
                } else {
                    out.splice(at..at, varint.iter().copied());
                }
            }
            Mutation::DeleteRun => {
                if !out.is_empty() {
                    let at = rng.random_range(0..out.len());
                    let len = rng.random_range(1..=(out.len() - at).min(64));
                    out.drain(at..at + len);
                }
            }
            Mutation::DuplicateRun => {
                if !out.is_empty() {
                    let at = rng.random_range(0..out.len());
                    let len = rng.random_range(1..=(out.len() - at).min(64));
                    let run = out[at..at + len].to_vec();
                    out.splice(at..at, run);
                }
            }
            Mutation::Splice => {
                let head = rng.random_range(0..=out.len());
                let tail = rng.random_range(0..=out.len());
                out.truncate(head);
                out.extend_from_slice(&frame[tail..]);
            }
            Mutation::RandomBytes => {
                let len = rng.random_range(0..=(2 * frame.len()).max(64));
                out = (0..len).map(|_| rng.random()).collect();
            }
            Mutation::Replay => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_frames() {
        let corpus = vec![vec![1u8, 2, 3, 4, 5, 6, 7, 8], vec![9u8; 40]];
        let mut a = Mutator::new(7);
        let mut b = Mutator::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next(&corpus), b.next(&corpus));
        }
    }

    #[test]
    fn every_mutation_is_drawn_and_changes_frames() {
        let corpus = vec![(0u8..100).collect::<Vec<u8>>()];
        let mut m = Mutator::new(1);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            let (frame, kind) = m.next(&corpus);
            let changed = frame != corpus[0];
            let e = seen.entry(kind).or_insert((0u32, 0u32));
            e.0 += 1;
            e.1 += u32::from(changed);
        }
        assert_eq!(seen.len(), Mutation::ALL.len(), "{seen:?}");
        for (kind, (drawn, changed)) in seen {
            if kind == Mutation::Replay {
                assert_eq!(changed, 0);
            } else {
                // Truncate keeps everything and a splice can rebuild the frame by chance.
                assert!(changed * 10 >= drawn * 9, "{kind:?}: {changed}/{drawn}");
            }
        }
    }

    #[test]
    fn inflated_varints_are_maximal() {
        let mut m = Mutator::new(3);
        for _ in 0..100 {
            let out = m.apply(&[0u8; 30], Mutation::InflateVarint);
            assert!(
                out.windows(5).any(|w| w == [0xff, 0xff, 0xff, 0xff, 0x0f])
                    || out.windows(10).any(|w| w[..9] == [0xff; 9] && w[9] == 0x01)
            );
        }
    }
}
