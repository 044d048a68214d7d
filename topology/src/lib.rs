//! Communication graphs for murmur (being built: see issue 4).
