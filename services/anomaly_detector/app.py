"""ASGI entry point: `uvicorn services.anomaly_detector.app:app`."""

from mlobs.server import create_app
from services.anomaly_detector.model import AnomalyDetector

app = create_app(AnomalyDetector.load())
