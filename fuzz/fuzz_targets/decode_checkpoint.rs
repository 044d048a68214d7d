#![no_main]
//! `PeerCheckpoint::decode (then Peer::restore)` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| murmur_compress_fuzz::check_checkpoint(data));
