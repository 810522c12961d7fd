"""Benchmarks that print figures, never assert them: `python -m bench.<module>` from the
repository's root (`make bench`)."""
