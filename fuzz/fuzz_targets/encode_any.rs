//! Every encoder on arbitrary f32 inputs; see `murmur_compress_fuzz::check_encoders`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| murmur_compress_fuzz::check_encoders(data));
