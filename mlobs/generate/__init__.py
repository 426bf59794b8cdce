"""Render configuration from observability.yaml: `python -m mlobs.generate` (`make generate`)."""
