"""Stage 5: the pytest plugin: options, the session, the per-test fixture and xdist scale-out."""
