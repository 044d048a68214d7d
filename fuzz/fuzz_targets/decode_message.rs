#![no_main]
//! `murmur_gossip::message::Message::decode` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| murmur_compress_fuzz::check_message(data));
