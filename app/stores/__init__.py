"""User-state stores: Redis (shared, durable stream) or in-process memory (embedded mode)."""
