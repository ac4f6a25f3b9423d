"""Tools that drive real dkvs processes: local clusters for demos, benchmarks, chaos runs."""
