"""The judge stage: rubrics, backends, the runner and budget, sampling, estimates, calibration, pairwise comparison."""
