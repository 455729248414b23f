"""Telling people: Prometheus metrics and alert rules, the Grafana dashboard, webhook notifications."""
