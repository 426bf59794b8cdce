"""create_app: one call turns a model object into an observable FastAPI model server."""

import asyncio
import hashlib
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlobs.drift import DriftMonitor
from mlobs.drift.report import drift_json
from mlobs.errors import (
    error_response,
    http_error_handler,
    json_response,
    retry_later_response,
    validation_error_handler,
)
from mlobs.faults import FaultInjector, InjectedFault, faults_router
from mlobs.logs import (
    CURRENT_RECORD,
    InferenceLog,
    InferenceRecord,
    configure_logging,
    flush_logs,
    get_logger,
)
from mlobs.metrics import ModelMetrics
from mlobs.middleware import InferenceMiddleware
from mlobs.model import InvalidPrediction, Prediction, ServedModel
from mlobs.runner import Overloaded, PredictionRunner, PredictionTimeout
from mlobs.settings import Settings
from mlobs.shutdown import GracefulShutdown
from mlobs.spec import DEFAULT_SPEC_PATH, Spec, duration_seconds, load_spec


def input_hash(payload: BaseModel) -> str:
    """A short stable hash of the validated input: joins log lines about the same input.

    BLAKE2b with an 8-byte digest: no secret to protect, and it is built in rather than set up
    through OpenSSL on every call, which made sha256 the dearest step of the log line.
    """
    data = payload.__pydantic_serializer__.to_json(payload)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _checked(prediction: Prediction) -> Prediction:
    confidence = prediction.confidence
    if not (isinstance(confidence, (int, float)) and 0.0 <= confidence <= 1.0):
        raise InvalidPrediction(f"model returned confidence {confidence!r}, outside [0, 1]")
    return prediction


def _error_origin(exc: BaseException) -> str:
    # Where it failed, without the exception message: messages can quote user input.
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"


def _shed(record: InferenceRecord, error_type: str, detail: str) -> Response:
    record.shed(error_type)
    return retry_later_response(error_type, detail, record.request_id)


def _spec_for(settings: Settings) -> Spec | None:
    if settings.spec_path is not None:
        return load_spec(settings.spec_path)
    return load_spec(DEFAULT_SPEC_PATH) if DEFAULT_SPEC_PATH.is_file() else None


def _drift_monitor(model: ServedModel, spec: Spec | None, metrics: ModelMetrics) -> DriftMonitor:
    assert model.baseline is not None
    options: dict[str, Any] = {}
    if spec is not None:
        options = {
            "psi_threshold": spec.alerts.drift.psi_threshold,
            "window_seconds": duration_seconds(spec.alerts.drift.window),
            "min_samples": spec.alerts.drift.min_samples,
        }
    monitor = DriftMonitor(model.baseline, **options)
    metrics.attach_drift(monitor)
    return monitor


def create_app(
    model: ServedModel,
    settings: Settings | None = None,
    *,
    spec: Spec | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Serve `model` with /predict, /model, /healthz, /readyz, /metrics and /drift.

    Settings default to the MLOBS_* environment; the spec to MLOBS_SPEC or ./observability.yaml
    when present. Each app gets its own metric registry unless one is passed. `predict` runs as
    mlobs.runner describes (awaited, in a thread pool, or inline), within a concurrency limit and
    a timeout; on SIGTERM the server drains (mlobs.shutdown).
    """
    settings = settings or Settings.from_env()
    spec = spec or _spec_for(settings)
    configure_logging(settings)
    log = get_logger(model=model.name, model_version=model.version)
    metrics = ModelMetrics(registry or CollectorRegistry(), model.name, model.version, model.labels)
    monitor = _drift_monitor(model, spec, metrics) if model.baseline is not None else None
    faults = FaultInjector()
    runner = PredictionRunner(
        model,
        settings.predict_concurrency,
        settings.predict_queue,
        settings.predict_timeout_seconds,
    )
    metrics.attach_limit(runner.limit)
    shutdown = GracefulShutdown(settings.shutdown_grace_seconds, log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.warm_up(model.example_input())  # the first real request is not the slow one
        shutdown.install()
        app.state.ready = True
        log.info(
            "server_ready",
            faults_enabled=settings.faults_enabled,
            predict_mode=runner.mode,
            predict_concurrency=settings.predict_concurrency,
        )
        if settings.faults_enabled and settings.admin_token is None:
            log.warning("faults_unprotected", hint="set MLOBS_ADMIN_TOKEN to protect /admin/faults")
        yield
        app.state.ready = False
        shutdown.uninstall()
        runner.close()
        if monitor is not None:
            monitor.flush()  # queued drift counts reach the (multiprocess) counters
        flush_logs()

    app = FastAPI(
        title=f"{model.name} model server",
        version=model.version,
        lifespan=lifespan,
        exception_handlers={
            RequestValidationError: validation_error_handler,
            HTTPException: http_error_handler,
        },
    )
    app.state.ready = False
    app.state.shutdown = shutdown
    app.add_middleware(
        InferenceMiddleware,
        metrics=metrics,
        log=InferenceLog(model.name, model.version),
        shutdown=shutdown,
        max_body_bytes=settings.max_body_bytes,
    )
    input_model = model.input_model

    @app.post("/predict", summary="Predict one input")
    async def predict(payload: input_model) -> Response:  # type: ignore[valid-type]
        record = CURRENT_RECORD.get()
        assert record is not None, "InferenceMiddleware sets the record"
        record.input_hash = input_hash(payload)
        if settings.log_raw_input:
            record.raw_input = payload.model_dump(mode="json")
        if shutdown.draining:
            return _shed(record, "shutting_down", "the server is stopping; retry another replica")
        try:
            if settings.faults_enabled and faults.active:
                ran = await runner.run(payload, faults.apply)
            else:
                ran = runner.run_now(payload) or await runner.run(payload)
            record.predict_ms = int(ran[1] * 1_000_000.0 + 0.5) / 1000.0
            prediction = _checked(ran[0])
        except Overloaded as exc:
            return _shed(record, "overloaded", f"too many predictions at once: {exc}")
        except asyncio.CancelledError:
            if not shutdown.draining:
                raise
            # A stopping uvicorn cancels the predictions still running CLOSE_SECONDS after the
            # drain (mlobs.serve): the caller is told to retry elsewhere, as new predictions
            # are, instead of getting uvicorn's plain-text 500 and a traceback in its log.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            detail = "the server stopped before the prediction ended; retry another replica"
            return _shed(record, "shutting_down", detail)
        except PredictionTimeout as exc:
            record.failed("timeout", 504)
            return error_response(504, "timeout", str(exc), record.request_id)
        except InjectedFault as exc:
            record.failed(type(exc).__name__, 500)
            return error_response(500, "injected_fault", str(exc), record.request_id)
        except Exception as exc:
            record.failed(type(exc).__name__, 500)
            log.error(
                "model_error",
                request_id=record.request_id,
                error_type=record.error_type,
                origin=_error_origin(exc),
            )
            detail = "the model failed on this input; the server log has the request id"
            return error_response(500, "model_error", detail, record.request_id)
        record.prediction = prediction.label
        record.confidence = prediction.confidence
        record.features = prediction.features
        if monitor is not None:
            monitor.observe(prediction.features, prediction.label)
        return json_response(
            {
                "label": prediction.label,
                "confidence": prediction.confidence,
                "model_version": model.version,
                "request_id": record.request_id,
                **prediction.extra,
            },
            request_id=record.request_id,
        )

    @app.get("/model", summary="Name, version, labels and input schema")
    async def describe() -> dict[str, Any]:
        return {
            "name": model.name,
            "version": model.version,
            "labels": list(model.labels),
            "input": model.input_schema(),
            "drift_features": list(model.baseline.features) if model.baseline else [],
        }

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded and warmed up")
    async def readyz() -> Response:
        if shutdown.draining:
            return json_response({"status": "stopping"}, 503)
        if app.state.ready:
            return json_response({"status": "ready", "model": model.name, "version": model.version})
        return json_response({"status": "starting"}, 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/drift", summary="Drift of recent inputs against the training baseline")
    async def drift() -> Response:
        if monitor is None:
            return error_response(404, "no_baseline", "this model has no drift baseline", None)
        return json_response(drift_json(model.name, model.version, monitor.report()))

    if settings.faults_enabled:
        app.include_router(faults_router(faults, settings.admin_token))
    return app
