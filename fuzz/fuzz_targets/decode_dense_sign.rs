#![no_main]
//! Decoder of the `DenseSign` format (codec byte forced) on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use murmur_compress::Format;

fuzz_target!(|data: &[u8]| murmur_compress_fuzz::check(data, Some(Format::DenseSign)));
