"""mlobs: make any FastAPI model server observable (metrics, logs, drift)."""
