"""Evaluation: Inception features, metric functions and cached reference statistics."""
