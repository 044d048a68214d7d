//! The murmur daemon (being built: see issue 7).
