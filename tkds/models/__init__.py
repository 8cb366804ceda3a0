"""Encoders, losses and self-supervised methods."""
