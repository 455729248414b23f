"""The drift stage: univariate tests, families and segments, MMD on embeddings, the Evidently report."""
