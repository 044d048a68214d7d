//! Cross-crate integration tests for murmur live in `tests/tests/`; this library is empty on
//! purpose (Cargo needs a target to hang the tests on). Tests that start real `murmur`
//! processes live in `daemon/tests/`, where Cargo hands them the built binary.
