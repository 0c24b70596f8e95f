"""Conversions and the in-memory API: export, import, metadata resolution, RawData, batches."""
