"""The experiments stage: sufficient statistics, tests, design checks, the decision."""
