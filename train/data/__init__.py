"""Data: the built-in stdlib corpus (TFDS builder) and the grain pipeline."""
