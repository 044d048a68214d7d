//! The murmur network simulator (being built: see issue 6).
