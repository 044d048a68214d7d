#![no_main]
//! The whole decoder (version, codec id and everything after) on arbitrary bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| murmur_compress_fuzz::check(data, None));
