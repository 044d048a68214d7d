//! Codecs for murmur's model updates (being built: see issue 3).
