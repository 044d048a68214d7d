//! Chunked snapshots: a snapshot whose vectors do not fit in one chunk travels as a
//! [`SnapshotManifest`] and chunks the receiver pulls, so no frame outgrows the transport's cap
//! whatever the model's size, and a lost frame costs one chunk, not the whole snapshot.
//!
//! This owns both ends of a transfer: the version a donor froze for one requester
//! ([`Outgoing`], in the requester's [`Neighbour`](super::neighbours::Neighbour) entry, with
//! the frozen x̂ shared by every requester at the same sequence number), and the assembly a
//! receiver builds ([`Incoming`], in the donor's entry). Once every chunk is in, the receiver
//! hands the whole snapshot to the ordinary snapshot path (`copies::on_snapshot`), so a chunked
//! snapshot is installed exactly as a one-frame one would be.
//!
//! # Layout and verification
//! The values are x̂ cut into chunks of `chunk_values`, then (when the model was asked for) x
//! cut the same way, so a chunk never straddles the two and the x̂ chunks (and their hashes)
//! are shared by every request at one sequence number. The manifest carries the SHA-256 of
//! each chunk and the SHA-256 of that list (`root`); the receiver checks the list against the
//! root before it allocates anything, and each chunk against its hash on arrival, before it
//! copies a value. A chunk with a wrong hash is refused as [`RejectReason::BadChunk`] (a
//! misbehaviour: an honest donor never sends one) and asked for again.
//!
//! # Flow control and resumption
//! The receiver keeps at most `snapshot_window` chunk requests outstanding per transfer, so a
//! download takes at most that many chunks per round trip of a donor's uplink and the donor's
//! gossip to others keeps its share. The retry timer of the request re-asks every chunk
//! outstanding for longer than the transfer's patience (`snapshot_timeout`, or four smoothed
//! round trips of its chunks when the donor is slower: a daemon answers between local steps,
//! which at 10M parameters take longer than the timeout), so a lost frame costs one chunk;
//! after [`MAX_STALLS`] intervals in a row without a chunk the whole request starts again. A connection
//! that drops takes both ends' state with it: after the reconnect the receiver asks afresh and
//! gets a new version, because a copy must be exact at the donor's current sequence number
//! and a resumed old version would be followed by a gap anyway.
//!
//! A donor keeps one frozen version per requester (replaced by that requester's next request,
//! dropped with the edge), answers at most [`MAX_SERVES_PER_CHUNK`] requests per chunk of it
//! (more are rate-limited, so a requester cannot turn 20-byte requests into a flood), and
//! holds the x̂ of one sequence number once however many requesters share it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::timers::TimerPurpose;
use super::{Micros, Peer, RejectReason};
use crate::message::{ChunkRequest, Message, Snapshot, SnapshotChunk, SnapshotManifest};

/// Fruitless retries of a chunked transfer before the request starts again from scratch.
pub(super) const MAX_STALLS: u32 = 4;

/// Requests a donor answers per chunk of one frozen version.
pub(super) const MAX_SERVES_PER_CHUNK: u8 = 4;

/// SHA-256 of a chunk's values as little-endian f32.
pub(crate) fn chunk_hash(values: &[f32]) -> [u8; 32] {
    let mut h = Sha256::new();
    // In blocks, so the hash sees the byte layout without a copy of the whole chunk.
    let mut block = [0u8; 4096];
    for part in values.chunks(block.len() / 4) {
        for (b, v) in block.chunks_exact_mut(4).zip(part) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&block[..part.len() * 4]);
    }
    h.finalize().into()
}

/// SHA-256 of the concatenated chunk hashes: the hash of the whole snapshot.
pub(crate) fn root_hash(chunk_hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in chunk_hashes {
        h.update(c);
    }
    h.finalize().into()
}

/// Chunks of one vector of `dim` values.
fn chunks_of(dim: usize, chunk_values: usize) -> usize {
    dim.div_ceil(chunk_values)
}

/// The hashes of `values` cut into chunks of `chunk_values`.
fn hashes_of(values: &[f32], chunk_values: usize) -> Vec<[u8; 32]> {
    values.chunks(chunk_values).map(chunk_hash).collect()
}

/// x̂ frozen at one sequence number, shared by every transfer of that version.
#[derive(Debug, Clone)]
pub(super) struct FrozenCopy {
    /// The sequence number it was frozen at.
    seq: u64,
    /// x̂ at that sequence number.
    values: Arc<[f32]>,
    /// Its chunk hashes.
    hashes: Arc<[[u8; 32]]>,
}

/// A donor's side of one chunked snapshot: the version frozen for one requester.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The nonce of the request it answers (chunk requests must carry it).
    nonce: u64,
    /// Frozen x̂.
    x_hat: FrozenCopy,
    /// Frozen model x, when the request asked for it.
    model: Option<Arc<[f32]>>,
    /// Requests answered per chunk, against [`MAX_SERVES_PER_CHUNK`].
    served: Vec<u8>,
}

/// A receiver's side of one chunked snapshot: what the manifest announced and what arrived.
#[derive(Debug)]
pub(super) struct Incoming {
    /// The announcement (hashes checked against its root).
    manifest: SnapshotManifest,
    /// x̂ then x, filled chunk by chunk.
    values: Vec<f32>,
    /// Which chunks arrived.
    received: Vec<bool>,
    /// Chunks still missing.
    missing: usize,
    /// The next chunk never requested.
    next: u32,
    /// Chunks requested and not yet arrived, with when they were (last) asked for.
    in_flight: BTreeMap<u32, Micros>,
    /// A chunk arrived since the retry timer last fired.
    progressed: bool,
    /// Retries in a row that found no progress.
    stalls: u32,
    /// Smoothed time from a chunk's request to its arrival (None before the first): a
    /// daemon's donor answers between its local steps, so this is what "lost" is measured
    /// against, not a fixed timeout.
    rtt: Option<Micros>,
}

impl Incoming {
    /// How long a chunk may be outstanding before it counts as lost: `snapshot_timeout`, or
    /// four smoothed round trips when the donor is slower than that.
    fn patience(&self, snapshot_timeout: Micros) -> Micros {
        snapshot_timeout.max(self.rtt.map_or(0, |r| 4 * r))
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// Whether a snapshot of `values` values goes out as chunks rather than one frame.
    pub(super) fn chunked(&self, values: usize) -> bool {
        values > self.config.snapshot_chunk_values
    }

    /// x̂ frozen at the current sequence number (reusing the last freeze if x̂ has not moved).
    fn frozen_x_hat(&mut self) -> FrozenCopy {
        if let Some(f) = &self.frozen
            && f.seq == self.seq
        {
            return f.clone();
        }
        let values: Arc<[f32]> = self.x_hat.as_slice().into();
        let hashes = hashes_of(&values, self.config.snapshot_chunk_values).into();
        let f = FrozenCopy {
            seq: self.seq,
            values,
            hashes,
        };
        self.frozen = Some(f.clone());
        f
    }

    /// Answers a snapshot request too large for one frame: freezes the version, keeps it for
    /// the requester and sends the manifest.
    pub(super) fn serve_chunked(&mut self, to: &I, nonce: u64, header: &Snapshot, model: bool) {
        let cv = self.config.snapshot_chunk_values;
        let x_hat = self.frozen_x_hat();
        let model: Option<Arc<[f32]>> = model.then(|| self.model.as_slice().unwrap().into());
        let mut chunk_hashes = x_hat.hashes.to_vec();
        if let Some(m) = &model {
            chunk_hashes.extend(hashes_of(m, cv));
        }
        let manifest = SnapshotManifest {
            nonce,
            seq: header.seq,
            round: header.round,
            degree: header.degree,
            has_model: model.is_some(),
            chunk_values: cv as u32,
            root: root_hash(&chunk_hashes),
            chunk_hashes,
        };
        let served = vec![0; manifest.chunk_hashes.len()];
        let bytes = Message::SnapshotManifest(manifest).encode();
        if let Some(nb) = self.neighbours.get_mut(to) {
            nb.outgoing = Some(Outgoing {
                nonce,
                x_hat,
                model,
                served,
            });
        }
        self.stats.snapshots_sent += 1;
        self.stats.snapshot_bytes_sent += bytes.len() as u64;
        self.send(to.clone(), bytes);
    }

    /// A chunk request: the chunk of the version frozen for this requester.
    pub(super) fn on_chunk_request(
        &mut self,
        from: &I,
        r: ChunkRequest,
    ) -> Result<(), RejectReason> {
        let cv = self.config.snapshot_chunk_values;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let Some(out) = nb.outgoing.as_mut().filter(|o| o.nonce == r.nonce) else {
            // An old transfer (replaced, or lost with a reconnect): not misbehaviour.
            return Err(RejectReason::UnsolicitedSnapshot);
        };
        let index = r.index as usize;
        let Some(count) = out.served.get_mut(index) else {
            return Err(RejectReason::InvalidField {
                what: "chunk index",
            });
        };
        if *count >= MAX_SERVES_PER_CHUNK {
            return Err(RejectReason::RateLimited);
        }
        *count += 1;
        let nx = chunks_of(out.x_hat.values.len(), cv);
        let (vector, i): (&[f32], usize) = if index < nx {
            (&out.x_hat.values, index)
        } else {
            (out.model.as_deref().expect("counted in served"), index - nx)
        };
        let end = ((i + 1) * cv).min(vector.len());
        let values = vector[i * cv..end].to_vec();
        let bytes = Message::SnapshotChunk(SnapshotChunk {
            nonce: r.nonce,
            index: r.index,
            values,
        })
        .encode();
        self.stats.snapshot_chunks_sent += 1;
        self.stats.snapshot_bytes_sent += bytes.len() as u64;
        self.send(from.clone(), bytes);
        Ok(())
    }

    /// A manifest answering the outstanding request: checked whole (shape, chunk count, root)
    /// before anything is allocated, then the first window of chunks is asked for.
    pub(super) fn on_manifest(
        &mut self,
        now: Micros,
        from: &I,
        m: SnapshotManifest,
    ) -> Result<(), RejectReason> {
        let dim = self.dim;
        let window = self.config.snapshot_window;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if nb.pending_snapshot != Some(m.nonce) || nb.incoming.is_some() {
            return Err(RejectReason::UnsolicitedSnapshot);
        }
        Self::check_degree(m.degree)?;
        if m.has_model && !nb.pending_wants_model {
            return Err(RejectReason::InvalidField {
                what: "manifest model flag",
            });
        }
        let cv = m.chunk_values as usize;
        if cv == 0 || cv > dim {
            return Err(RejectReason::InvalidField {
                what: "manifest chunk size",
            });
        }
        let per_vector = chunks_of(dim, cv);
        let count = per_vector * (1 + usize::from(m.has_model));
        if m.chunk_hashes.len() != count {
            return Err(RejectReason::InvalidField {
                what: "manifest chunk count",
            });
        }
        if root_hash(&m.chunk_hashes) != m.root {
            return Err(RejectReason::InvalidField {
                what: "manifest root hash",
            });
        }
        let total = dim * (1 + usize::from(m.has_model));
        nb.incoming = Some(Incoming {
            values: vec![0.0; total],
            received: vec![false; count],
            missing: count,
            next: 0,
            in_flight: BTreeMap::new(),
            progressed: true,
            stalls: 0,
            rtt: None,
            manifest: m,
        });
        for _ in 0..window {
            if !self.request_next_chunk(now, from) {
                break;
            }
        }
        Ok(())
    }

    /// Asks `from` for the next chunk never requested; false when none is left.
    fn request_next_chunk(&mut self, now: Micros, from: &I) -> bool {
        let Some(inc) = self
            .neighbours
            .get_mut(from)
            .and_then(|nb| nb.incoming.as_mut())
        else {
            return false;
        };
        if inc.next as usize >= inc.received.len() {
            return false;
        }
        let index = inc.next;
        inc.next += 1;
        inc.in_flight.insert(index, now);
        let nonce = inc.manifest.nonce;
        self.ask_chunk(from, nonce, index);
        true
    }

    /// Sends one chunk request (first asks, re-asks after a bad chunk, retries after a loss).
    fn ask_chunk(&mut self, to: &I, nonce: u64, index: u32) {
        self.send(
            to.clone(),
            Message::ChunkRequest(ChunkRequest { nonce, index }).encode(),
        );
    }

    /// A chunk: checked against the manifest (index, length, hash, finiteness) before a value
    /// is copied; the last one hands the whole snapshot to the ordinary snapshot path.
    pub(super) fn on_chunk(
        &mut self,
        now: Micros,
        from: &I,
        c: SnapshotChunk,
    ) -> Result<(), RejectReason> {
        let dim = self.dim;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let Some(inc) = nb
            .incoming
            .as_mut()
            .filter(|inc| inc.manifest.nonce == c.nonce)
        else {
            return Err(RejectReason::UnsolicitedSnapshot);
        };
        let index = c.index as usize;
        if index >= inc.received.len() {
            return Err(RejectReason::InvalidField {
                what: "chunk index",
            });
        }
        if inc.received[index] {
            // A duplicate (a retry crossed the answer): its values are already in.
            self.stats.duplicates_dropped += 1;
            return Ok(());
        }
        let cv = inc.manifest.chunk_values as usize;
        let per_vector = chunks_of(dim, cv);
        let i = index % per_vector;
        let len = ((i + 1) * cv).min(dim) - i * cv;
        if c.values.len() != len {
            return Err(RejectReason::WrongDimension {
                expected: len,
                got: c.values.len(),
            });
        }
        if chunk_hash(&c.values) != inc.manifest.chunk_hashes[index] {
            // Asked for again at once (the donor answers each chunk a bounded number of
            // times); the rejection counts against the donor's misbehaviour record.
            self.ask_chunk(from, c.nonce, c.index);
            return Err(RejectReason::BadChunk { index: c.index });
        }
        if !c.values.iter().all(|v| v.is_finite()) {
            return Err(RejectReason::NonFinite {
                what: "snapshot chunk",
            });
        }
        let start = (index / per_vector) * dim + i * cv;
        inc.values[start..start + len].copy_from_slice(&c.values);
        inc.received[index] = true;
        inc.missing -= 1;
        if let Some(asked) = inc.in_flight.remove(&c.index) {
            let sample = now.saturating_sub(asked);
            inc.rtt = Some(inc.rtt.map_or(sample, |r| (3 * r + sample) / 4));
        }
        inc.progressed = true;
        self.stats.snapshot_chunks_received += 1;
        if inc.missing > 0 {
            self.request_next_chunk(now, from);
            return Ok(());
        }
        let inc = nb.incoming.take().expect("just used");
        let m = inc.manifest;
        let mut values = inc.values;
        let model = m.has_model.then(|| values.split_off(dim));
        let snapshot = Snapshot {
            nonce: m.nonce,
            seq: m.seq,
            round: m.round,
            degree: m.degree,
            x_hat: values,
            model,
        };
        self.on_snapshot(now, from, snapshot)
    }

    /// The retry timer of a request whose manifest arrived: re-asks every chunk asked for at
    /// least `snapshot_timeout` ago (lost on the way), re-arms, and gives up (true: the
    /// caller starts the request again) after [`MAX_STALLS`] intervals in a row without a
    /// chunk.
    pub(super) fn retry_chunks(&mut self, now: Micros, j: &I, nonce: u64) -> bool {
        let snapshot_timeout = self.config.snapshot_timeout;
        let Some(inc) = self
            .neighbours
            .get_mut(j)
            .and_then(|nb| nb.incoming.as_mut())
            .filter(|inc| inc.manifest.nonce == nonce)
        else {
            return true;
        };
        let timeout = inc.patience(snapshot_timeout);
        if inc.progressed {
            inc.progressed = false;
            inc.stalls = 0;
        } else {
            inc.stalls += 1;
            if inc.stalls > MAX_STALLS {
                if let Some(nb) = self.neighbours.get_mut(j) {
                    nb.incoming = None;
                }
                return true;
            }
        }
        let lost: Vec<u32> = inc
            .in_flight
            .iter_mut()
            .filter(|(_, asked)| now >= **asked + timeout)
            .map(|(index, asked)| {
                *asked = now;
                *index
            })
            .collect();
        if !lost.is_empty() {
            self.stats.snapshot_retries += 1;
        }
        for index in lost {
            self.ask_chunk(j, nonce, index);
        }
        self.schedule(
            now + timeout,
            TimerPurpose::SnapshotRetry {
                neighbour: j.clone(),
                nonce,
            },
        );
        false
    }

    /// Chunks received by this peer over its life (what a joiner's startup deadline watches:
    /// a download still making progress is waited for).
    pub(super) fn chunk_progress(&self) -> u64 {
        self.stats.snapshot_chunks_received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_hash_is_sha256_of_little_endian_values() {
        // SHA-256 of the empty string, and of the 8 bytes of [1.0, -2.0] written out by hand.
        assert_eq!(
            chunk_hash(&[])[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "sha256 of nothing"
        );
        let mut h = Sha256::new();
        h.update([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(chunk_hash(&[1.0, -2.0]), want);
        // Longer than one block of the hasher's staging buffer.
        let long: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        let mut h = Sha256::new();
        for v in &long {
            h.update(v.to_le_bytes());
        }
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(chunk_hash(&long), want);
    }

    #[test]
    fn chunks_cover_the_vector_once() {
        assert_eq!(chunks_of(10, 3), 4);
        assert_eq!(chunks_of(9, 3), 3);
        assert_eq!(hashes_of(&[0.0; 10], 3).len(), 4);
    }
}
