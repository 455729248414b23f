"""What everything else builds on: the log contract, metric names, arm assignment, redaction, partitions. Standard library only; the serving client imports it."""
