"""The stack without Docker: model servers and the real Prometheus/Alertmanager binaries."""
