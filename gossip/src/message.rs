//! The gossip wire messages: a versioned postcard envelope around eleven kinds of message.
//!
//! Every frame a peer sends is `varint(PROTOCOL_VERSION) ++ postcard(Message)`. Decoding is
//! strict and never panics on untrusted bytes: the size cap is checked before anything is
//! parsed (so no allocation can exceed it), the version is read before the body, and trailing
//! bytes are an error. Semantic checks that need the receiver's state (dimension, finiteness,
//! model fingerprint, sequence numbers) live in [`crate::peer`], which runs them before any
//! state change.
//!
//! | message | when | carries |
//! |---|---|---|
//! | [`Hello`] | a neighbour came up (and as a reply) | dimension, model fingerprint, algorithm, degree, round, update sequence number |
//! | [`Update`] | once per round to every neighbour | sequence number, round, degree, one `murmur-compress` frame |
//! | [`SnapshotRequest`] | a gap, a reconnect, a hello behind the copy (a restart) or a new neighbour whose public copy is unknown | nonce, whether the sender's model is wanted (joining) |
//! | [`Snapshot`] | answer to a request that fits in one chunk | the dense public copy x̂ at a sequence number (and the model x for joiners) |
//! | [`SnapshotManifest`] | answer to a request larger than one chunk | the snapshot's sequence number, round and degree, its chunk size, one SHA-256 per chunk and the hash of that list |
//! | [`ChunkRequest`] | the receiver of a manifest, at most `snapshot_window` outstanding | nonce, chunk index |
//! | [`SnapshotChunk`] | answer to a chunk request | nonce, chunk index, the chunk's values |
//! | [`PushShare`] | push-sum only, once per round per out-neighbour | round, push-sum weight share, the sender's de-biased model |
//! | [`PushMark`] | push-sum only, once per round to every neighbour pushed nothing | round (paces round-tagged push-sum) |
//! | [`PushUpdate`] | compressed push-sum, once per round to every neighbour | an [`Update`] (ẑ's compressed difference), the sender's push-sum weight, the receiver's share of it (0: not a target this round) |
//! | `Goodbye` | a peer leaves cleanly | nothing |

use serde::{Deserialize, Serialize};

/// Version of the wire format; a frame with another version is rejected before its body is read.
/// Version 2: push-sum shares carry the de-biased model (version 1 carried the numerator share)
/// and push-sum has round markers. Version 3: compressed push-sum ([`PushUpdate`],
/// [`AlgorithmKind::CompressedPushSum`]). Version 4: chunked snapshots ([`SnapshotManifest`],
/// [`ChunkRequest`], [`SnapshotChunk`]).
pub const PROTOCOL_VERSION: u16 = 4;

/// Which averaging algorithm a peer runs; both ends of an edge must agree (checked in [`Hello`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlgorithmKind {
    /// CHOCO-SGD: compressed differences against public copies x̂.
    Choco,
    /// Exact D-PSGD: the dense model is sent every round.
    Dpsgd,
    /// Stochastic gradient push (push-sum) for directed or time-varying graphs.
    PushSum,
    /// Push-sum whose numerators travel as compressed differences against public copies, as
    /// CHOCO's models do.
    CompressedPushSum,
}

impl AlgorithmKind {
    /// Whether neighbours' public copies are kept exact by sequence-numbered compressed
    /// updates (CHOCO, compressed push-sum): copies need a snapshot to start and to repair.
    pub fn tracks_copies(self) -> bool {
        matches!(
            self,
            AlgorithmKind::Choco | AlgorithmKind::CompressedPushSum
        )
    }

    /// Whether the peer pushes weight shares (push-sum, dense or compressed) and mixes them on
    /// arrival.
    pub fn pushes(self) -> bool {
        matches!(
            self,
            AlgorithmKind::PushSum | AlgorithmKind::CompressedPushSum
        )
    }
}

/// First message on every edge, in both directions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Length of the flat parameter vector.
    pub dim: u32,
    /// Fingerprint of the model family (architecture, feature and class counts).
    pub fingerprint: u64,
    /// Algorithm the sender runs.
    pub algorithm: AlgorithmKind,
    /// The sender's current number of neighbours (for Metropolis–Hastings weights).
    pub degree: u32,
    /// The round the sender is in.
    pub round: u64,
    /// Sequence number of the last update the sender sent (0: none, its public copy is zero).
    pub seq: u64,
    /// Whether the receiver should answer with its own hello (set on the first hello of an
    /// edge, so a hello lost before the other end knew the edge is repaired).
    pub reply_wanted: bool,
}

/// One round's compressed update q (CHOCO) or dense model (D-PSGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Sequence number, 1 for the first update after the sender's public copy was zero; every
    /// neighbour receives every sequence number.
    pub seq: u64,
    /// Round the update belongs to.
    pub round: u64,
    /// The sender's current degree.
    pub degree: u32,
    /// A `murmur_compress::Compressed` frame (`Compressed::encode`).
    #[serde(with = "serde_bytes_compat")]
    pub frame: Vec<u8>,
}

/// Asks a neighbour for a dense snapshot of its public copy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Echoed in the answering [`Snapshot`]; only the answer to the outstanding request is used.
    pub nonce: u64,
    /// Whether the sender's model x is wanted too (a fresh peer joining mid-training).
    pub want_model: bool,
}

/// A dense snapshot of the sender's public state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The nonce of the request this answers.
    pub nonce: u64,
    /// Sequence number of the last update folded into `x_hat`.
    pub seq: u64,
    /// Round tag of that update (the sender's current round when it has sent none).
    pub round: u64,
    /// The sender's current degree.
    pub degree: u32,
    /// The sender's public copy x̂ (CHOCO) or its last sent model (D-PSGD).
    pub x_hat: Vec<f32>,
    /// The sender's model x, when the request asked for it and the sender serves models.
    pub model: Option<Vec<f32>>,
}

/// The first answer to a snapshot request whose vectors do not fit in one chunk: what the
/// snapshot is, without its values. The values, x̂ followed by x when the model was asked for,
/// are cut into chunks of `chunk_values` (the last one shorter) that the receiver pulls with
/// [`ChunkRequest`]s. Every chunk is checked against its hash on arrival, and the list against
/// `root`, so a bad chunk is caught and named before anything is installed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// The nonce of the request this answers.
    pub nonce: u64,
    /// Sequence number of the last update folded into x̂.
    pub seq: u64,
    /// Round tag of that update (the sender's current round when it has sent none).
    pub round: u64,
    /// The sender's current degree.
    pub degree: u32,
    /// Whether the sender's model x follows x̂ in the chunks.
    pub has_model: bool,
    /// Values per chunk (every chunk but the last holds exactly this many).
    pub chunk_values: u32,
    /// SHA-256 of each chunk's values (little-endian f32), in chunk order.
    pub chunk_hashes: Vec<[u8; 32]>,
    /// SHA-256 of the concatenated chunk hashes: the hash of the whole snapshot.
    pub root: [u8; 32],
}

/// Asks the sender of a [`SnapshotManifest`] for one chunk of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The nonce of the snapshot request the manifest answered.
    pub nonce: u64,
    /// Which chunk, from 0.
    pub index: u32,
}

/// One chunk of a snapshot announced by a [`SnapshotManifest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The nonce of the snapshot request the manifest answered.
    pub nonce: u64,
    /// Which chunk, from 0.
    pub index: u32,
    /// Its values.
    pub values: Vec<f32>,
}

/// Push-sum share: the receiver adds `weight × values` to its numerator and `weight` to its
/// weight. The values are the sender's de-biased model, not the numerator share, so they
/// keep the model's scale however small the weight gets (the weight is f64; a numerator in
/// f32 would underflow once weights shrink).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushShare {
    /// Round the share was pushed in (used to drop duplicates).
    pub round: u64,
    /// Share of the push-sum weight.
    pub weight: f64,
    /// The sender's de-biased model x when it pushed.
    pub values: Vec<f32>,
}

/// Compressed push-sum: the round's update q = Q(z − ẑ) of the sender's numerator z = ω x,
/// sent to every neighbour so that each keeps ẑ exact, with the sender's push-sum weight ω
/// and the receiver's share a of it (1/(targets + 1) for a target this round, 0 otherwise).
/// A receiver folds q into its copy ẑ_j, then adds γ·a·ẑ_j to its numerator and γ·a·ω to its
/// weight; the sender took γ(1 − a_own)·(ẑ, ω) off its own, so mass is conserved exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushUpdate {
    /// The compressed difference, with its sequence number and round.
    pub update: Update,
    /// The sender's push-sum weight ω when it sent.
    pub weight: f64,
    /// The receiver's share a of this round's push, in [0, 1].
    pub share: f64,
}

/// Push-sum round marker: the sender finished pushing round `round` and pushed nothing to the
/// receiver (its targets were others). Round-tagged push-sum waits for a share or a marker of
/// the round from every neighbour, so fast peers do not run ahead of slow ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushMark {
    /// The round the sender finished pushing.
    pub round: u64,
}

/// Every message a peer sends or receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Update`].
    Update(Update),
    /// See [`SnapshotRequest`].
    SnapshotRequest(SnapshotRequest),
    /// See [`Snapshot`].
    Snapshot(Snapshot),
    /// See [`PushShare`].
    PushShare(PushShare),
    /// The sender leaves; the receiver drops it as a neighbour.
    Goodbye,
    /// See [`PushMark`].
    PushMark(PushMark),
    /// See [`PushUpdate`].
    PushUpdate(PushUpdate),
    /// See [`SnapshotManifest`].
    SnapshotManifest(SnapshotManifest),
    /// See [`ChunkRequest`].
    ChunkRequest(ChunkRequest),
    /// See [`SnapshotChunk`].
    SnapshotChunk(SnapshotChunk),
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The frame is larger than the receiver's cap (checked before parsing).
    #[error("message of {len} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The frame is empty.
    #[error("empty message")]
    Empty,
    /// The envelope names another protocol version.
    #[error("unsupported protocol version {got} (this peer speaks {supported})")]
    UnsupportedVersion {
        /// Version in the frame.
        got: u16,
        /// [`PROTOCOL_VERSION`].
        supported: u16,
    },
    /// postcard could not parse the body.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes were left over after a complete message.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl MessageError {
    /// Every [`MessageError::label`], for metrics that list each series from the start.
    pub const LABELS: [&'static str; 5] = [
        "message-too-large",
        "message-empty",
        "message-unsupported-version",
        "message-malformed",
        "message-trailing-bytes",
    ];

    /// A stable metric label (kebab case, `message-` prefixed).
    pub fn label(&self) -> &'static str {
        match self {
            MessageError::TooLarge { .. } => Self::LABELS[0],
            MessageError::Empty => Self::LABELS[1],
            MessageError::UnsupportedVersion { .. } => Self::LABELS[2],
            MessageError::Malformed(_) => Self::LABELS[3],
            MessageError::TrailingBytes { .. } => Self::LABELS[4],
        }
    }
}

impl Message {
    /// Encodes the message in the versioned envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_stdvec(&PROTOCOL_VERSION).expect("u16 always serializes");
        // Serializing plain data into a Vec cannot fail.
        postcard::to_io(self, &mut out).expect("message serializes into a Vec");
        out
    }

    /// Decodes a frame, refusing frames longer than `max_bytes` before parsing anything.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Message, MessageError> {
        if bytes.len() > max_bytes {
            return Err(MessageError::TooLarge {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        if bytes.is_empty() {
            return Err(MessageError::Empty);
        }
        let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(bytes)
            .map_err(|e| MessageError::Malformed(format!("version: {e}")))?;
        if version != PROTOCOL_VERSION {
            return Err(MessageError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let (message, rest): (Message, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(MessageError::TrailingBytes { extra: rest.len() });
        }
        Ok(message)
    }

    /// Short name of the message kind, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Update(_) => "update",
            Message::SnapshotRequest(_) => "snapshot-request",
            Message::Snapshot(_) => "snapshot",
            Message::PushShare(_) => "push-share",
            Message::Goodbye => "goodbye",
            Message::PushMark(_) => "push-mark",
            Message::PushUpdate(_) => "push-update",
            Message::SnapshotManifest(_) => "snapshot-manifest",
            Message::ChunkRequest(_) => "chunk-request",
            Message::SnapshotChunk(_) => "snapshot-chunk",
        }
    }
}

/// Serializes `Vec<u8>` as a postcard byte string (length + raw bytes) rather than a sequence
/// of u8 (which postcard would also write as raw bytes, but through the slower seq path).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// FNV-1a 64-bit hash of a model description, for [`Hello::fingerprint`]. Deterministic across
/// platforms and releases (unlike `std`'s hasher), so peers built separately agree.
pub fn fingerprint(description: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in description {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                dim: 650,
                fingerprint: fingerprint(b"softmax 64 10"),
                algorithm: AlgorithmKind::Choco,
                degree: 4,
                round: 17,
                seq: 16,
                reply_wanted: true,
            }),
            Message::Update(Update {
                seq: 3,
                round: 2,
                degree: 7,
                frame: vec![1, 2, 3, 255],
            }),
            Message::SnapshotRequest(SnapshotRequest {
                nonce: 9,
                want_model: true,
            }),
            Message::Snapshot(Snapshot {
                nonce: 9,
                seq: 5,
                round: 4,
                degree: 2,
                x_hat: vec![1.0, -2.5],
                model: Some(vec![0.5, 0.25]),
            }),
            Message::PushShare(PushShare {
                round: 1,
                weight: 0.5,
                values: vec![3.0],
            }),
            Message::Goodbye,
            Message::PushMark(PushMark { round: 7 }),
            Message::PushUpdate(PushUpdate {
                update: Update {
                    seq: 4,
                    round: 3,
                    degree: 2,
                    frame: vec![9, 8, 7],
                },
                weight: 0.75,
                share: 1.0 / 3.0,
            }),
            Message::SnapshotManifest(SnapshotManifest {
                nonce: 3,
                seq: 8,
                round: 7,
                degree: 4,
                has_model: true,
                chunk_values: 2,
                chunk_hashes: vec![[1; 32], [2; 32]],
                root: [3; 32],
            }),
            Message::ChunkRequest(ChunkRequest { nonce: 3, index: 1 }),
            Message::SnapshotChunk(SnapshotChunk {
                nonce: 3,
                index: 1,
                values: vec![0.5, -1.0],
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes, 1 << 20), Ok(m));
        }
    }

    #[test]
    fn cap_is_checked_before_parsing() {
        let bytes = samples()[3].encode();
        assert_eq!(
            Message::decode(&bytes, bytes.len() - 1),
            Err(MessageError::TooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }

    #[test]
    fn version_trailing_and_truncation_are_named() {
        let mut bytes = samples()[1].encode();
        let other = PROTOCOL_VERSION as u8 + 1;
        bytes[0] = other;
        assert_eq!(
            Message::decode(&bytes, 1 << 20),
            Err(MessageError::UnsupportedVersion {
                got: u16::from(other),
                supported: PROTOCOL_VERSION
            })
        );
        let mut bytes = samples()[1].encode();
        bytes.push(0);
        assert_eq!(
            Message::decode(&bytes, 1 << 20),
            Err(MessageError::TrailingBytes { extra: 1 })
        );
        let bytes = samples()[3].encode();
        for cut in 0..bytes.len() {
            assert!(
                Message::decode(&bytes[..cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(Message::decode(&[], 10), Err(MessageError::Empty));
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        // the version, Snapshot tag, then a vector length of 2^62 with no data behind it.
        let mut bytes = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
        bytes.push(3); // Snapshot
        bytes.extend([1, 1, 1, 1]); // nonce, seq, round, degree
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        assert!(matches!(
            Message::decode(&bytes, 1 << 20),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn fingerprint_is_fnv1a() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
