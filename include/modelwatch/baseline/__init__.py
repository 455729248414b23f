"""Baselines: the drift columns, the bottom-k sample, sketch profiles, the store stages read, and the build."""
