//! murmur's own libp2p protocol, `/murmur/gossip/1`: one long-lived stream per peer and
//! direction carrying length-delimited postcard frames (`u32` big-endian length, then the
//! payload), with a hard cap on the frame size checked before allocating.
//!
//! A frame is a [`Wire`] envelope: a neighbour selection (the live topology is agreed edge by
//! edge: an edge is up only when both ends selected each other), an opaque `murmur-gossip`
//! message for the sans-IO peer, or the sender's current neighbour list (what a node's
//! dashboard draws of the swarm beyond its own edges). Frames on a stream arrive in order, so the
//! peer's sequence numbers rarely see a gap.

use std::io;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};

/// The protocol name every murmur daemon speaks.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/murmur/gossip/1");

/// Bytes of the length prefix (u32, big endian).
const LEN_BYTES: usize = 4;

/// One frame on `/murmur/gossip/1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// "I (do not) want you as a neighbour", versioned and acknowledged (see
    /// [`murmur_topology::agreement`]).
    Select(murmur_topology::Select),
    /// A `murmur_gossip::message::Message` frame, passed to the peer unchanged.
    Gossip(Vec<u8>),
    /// The sender's current neighbours (peer ids as bytes, at most
    /// [`MAX_REPORTED_NEIGHBOURS`]), sent to each neighbour when the sender's edges change.
    /// Only displayed: nothing in training depends on it, so a false list misleads no
    /// algorithm. Added after `Select` and `Gossip`, so a node that predates it counts the
    /// frame as a malformed envelope and goes on.
    Neighbours(Vec<Vec<u8>>),
}

/// Most neighbours one [`Wire::Neighbours`] frame may list (the neighbour rule keeps degrees
/// near log n; a longer list is refused, not truncated).
pub const MAX_REPORTED_NEIGHBOURS: usize = 64;

/// Why a [`Wire::Neighbours`] list was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NeighboursError {
    /// More entries than [`MAX_REPORTED_NEIGHBOURS`].
    #[error("{0} neighbours listed, at most {MAX_REPORTED_NEIGHBOURS} allowed")]
    TooMany(usize),
    /// An entry that is not a peer id.
    #[error("entry {0} is not a peer id")]
    NotAPeerId(usize),
}

impl Wire {
    /// The envelope listing `peers` (the first [`MAX_REPORTED_NEIGHBOURS`]).
    pub fn neighbours<'a>(peers: impl IntoIterator<Item = &'a libp2p::PeerId>) -> Wire {
        Wire::Neighbours(
            peers
                .into_iter()
                .take(MAX_REPORTED_NEIGHBOURS)
                .map(|p| p.to_bytes())
                .collect(),
        )
    }
}

/// Parses a [`Wire::Neighbours`] list strictly: every entry a peer id, no more than the cap.
pub fn parse_neighbours(list: &[Vec<u8>]) -> Result<Vec<libp2p::PeerId>, NeighboursError> {
    if list.len() > MAX_REPORTED_NEIGHBOURS {
        return Err(NeighboursError::TooMany(list.len()));
    }
    list.iter()
        .enumerate()
        .map(|(i, b)| libp2p::PeerId::from_bytes(b).map_err(|_| NeighboursError::NotAPeerId(i)))
        .collect()
}

impl Wire {
    /// postcard bytes of the envelope.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a Wire envelope always serializes")
    }

    /// Strict decoding: no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        let (wire, rest) = postcard::take_from_bytes(bytes)?;
        if rest.is_empty() {
            Ok(wire)
        } else {
            Err(postcard::Error::DeserializeUnexpectedEnd)
        }
    }
}

/// Reads one length-delimited frame of at most `max` bytes.
pub async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: libp2p::futures::AsyncRead + Unpin + Send,
{
    let mut len = [0u8; LEN_BYTES];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            FrameTooLarge { len, max },
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes frames laid out by [`push_frame`] in one write and flushes them: one yamux frame
/// and one noise record for all of them.
pub async fn write_frames<T>(io: &mut T, batch: &[u8]) -> io::Result<()>
where
    T: libp2p::futures::AsyncWrite + Unpin + Send,
{
    io.write_all(batch).await?;
    io.flush().await
}

/// Appends one length-delimited frame to `buf`, so that several frames queued together
/// leave in one write (one yamux frame, one noise record, one system call).
pub fn push_frame(buf: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    buf.reserve(LEN_BYTES + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    Ok(())
}

/// A frame longer than the configured cap (the stream is dropped, the sender counted).
#[derive(Debug, thiserror::Error)]
#[error("frame of {len} bytes exceeds the {max}-byte cap")]
pub struct FrameTooLarge {
    /// Announced length.
    pub len: usize,
    /// Cap.
    pub max: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_frames_fail_before_allocation() {
        let wire = Wire::Gossip(vec![7; 300]);
        let mut frame = Vec::new();
        push_frame(&mut frame, &wire.encode()).unwrap();
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frames(&mut buf, &frame)).unwrap();
        let bytes = buf.into_inner();
        let back = block_on(read_frame(&mut Cursor::new(bytes.clone()), 1024)).unwrap();
        assert_eq!(Wire::decode(&back).unwrap(), wire);

        let err = block_on(read_frame(&mut Cursor::new(bytes), 100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("exceeds the 100-byte cap"),
            "{err}"
        );

        // A length field inflated to 4 GiB with no payload behind it: rejected by the cap.
        let err = block_on(read_frame(&mut Cursor::new(vec![0xff; 4]), 1 << 20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    fn select(chooses: bool) -> Wire {
        Wire::Select(murmur_topology::Select {
            chooses,
            version: murmur_topology::Version {
                incarnation: 0x1234_5678_9abc,
                counter: 3,
            },
            acked: murmur_topology::Version::default(),
            query: true,
        })
    }

    #[test]
    fn random_and_mutated_frames_never_panic_and_never_allocate_past_the_cap() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let valid = [
            select(true).encode(),
            Wire::Gossip(vec![1, 2, 3, 4, 5, 6, 7, 8]).encode(),
        ];
        let (mut accepted, mut refused) = (0u32, 0u32);
        for i in 0..200_000u32 {
            let mut bytes = valid[i as usize % 2].clone();
            match i % 4 {
                0 => {
                    let n = rng.random_range(0..64);
                    bytes = (0..n).map(|_| rng.random()).collect();
                }
                1 => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.random_range(0..8);
                }
                2 => bytes.truncate(rng.random_range(0..bytes.len())),
                _ => bytes.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>())),
            }
            match Wire::decode(&bytes) {
                Ok(Wire::Gossip(payload)) => {
                    assert!(payload.len() <= bytes.len());
                    accepted += 1;
                }
                Ok(Wire::Select(_)) => accepted += 1,
                Ok(Wire::Neighbours(list)) => {
                    // Whatever decoded, the strict parse answers without panicking.
                    let _ = parse_neighbours(&list);
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
            // The same bytes behind a length field, inflated or not.
            let mut framed = if i % 3 == 0 {
                rng.random::<u32>().to_be_bytes().to_vec()
            } else {
                (bytes.len() as u32).to_be_bytes().to_vec()
            };
            framed.extend_from_slice(&bytes);
            if let Ok(frame) = block_on(read_frame(&mut Cursor::new(framed), 64)) {
                assert!(frame.len() <= 64);
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn envelopes_round_trip_and_trailing_bytes_are_rejected() {
        for wire in [
            select(true),
            select(false),
            Wire::Gossip(vec![]),
            Wire::Neighbours(vec![]),
        ] {
            assert_eq!(Wire::decode(&wire.encode()).unwrap(), wire);
        }
        let mut bytes = select(true).encode();
        bytes.push(0);
        assert!(Wire::decode(&bytes).is_err());
        assert!(Wire::decode(&[9, 9, 9]).is_err());
    }

    #[test]
    fn neighbour_lists_round_trip_and_bad_ones_are_refused_by_name() {
        let peers: Vec<libp2p::PeerId> = (0..3).map(|_| libp2p::PeerId::random()).collect();
        let wire = Wire::neighbours(&peers);
        let Wire::Neighbours(list) = Wire::decode(&wire.encode()).unwrap() else {
            panic!("not a neighbour list");
        };
        assert_eq!(parse_neighbours(&list).unwrap(), peers);

        let many: Vec<libp2p::PeerId> = (0..MAX_REPORTED_NEIGHBOURS + 5)
            .map(|_| libp2p::PeerId::random())
            .collect();
        let Wire::Neighbours(capped) = Wire::neighbours(&many) else {
            unreachable!()
        };
        assert_eq!(capped.len(), MAX_REPORTED_NEIGHBOURS);

        let mut forged = capped.clone();
        forged.push(peers[0].to_bytes());
        assert_eq!(
            parse_neighbours(&forged),
            Err(NeighboursError::TooMany(MAX_REPORTED_NEIGHBOURS + 1))
        );
        let mut broken = list.clone();
        broken[1] = vec![0xde, 0xad];
        assert_eq!(
            parse_neighbours(&broken),
            Err(NeighboursError::NotAPeerId(1))
        );
    }
}
