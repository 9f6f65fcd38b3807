"""Storage backends behind small Protocols (store.base); SQLite is the embedded default."""
