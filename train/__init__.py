"""Trainer for the models/ transformer with optax_muon optimizers (`python -m train`)."""
