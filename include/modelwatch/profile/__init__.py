"""The profile stage: operational metrics and hard limits."""
