"""The recommend pipeline, event ingestion and the near-line user-vector worker (no HTTP here)."""
