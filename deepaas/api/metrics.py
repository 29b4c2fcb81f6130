"""Prometheus metrics of the server, served at ``GET /metrics``.

:class:`Metrics` owns a registry of its own (never prometheus-client's global one)
and is also the :class:`~deepaas.telemetry.Telemetry` the execution engine
reports queue waits, batch sizes and worker restarts to.

Several HTTP worker processes (``deepaas-run --http-workers N``) each count in
files of prometheus-client's multiprocess mode, in a directory the gunicorn
master creates for the run; whichever worker answers ``/metrics`` merges them
all. Values that are read rather than counted (requests in flight, predictions
queued) are written by each worker once a second, and by the answering worker
just before it answers; the training counts come from the shared job store, read
once by the answering worker.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from deepaas.api.keys import METRICS, OBSERVER, PREDICTORS
from deepaas.api.security.access import Scope, requires
from deepaas.jobs import JobStatus, JobStore
from deepaas.model.predictor import Predictor

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "SAMPLE_INTERVAL_S",
    "Metrics",
    "RequestSeries",
    "handle_metrics",
    "sampling",
]

_LOG = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds, in seconds, of the latency and queue wait histograms."""

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Upper bounds of the batch size histogram."""

SAMPLE_INTERVAL_S = 1.0
"""How often each of several HTTP workers writes the values it reads."""


class Metrics:
    """The server's metrics, and the Telemetry the execution engine reports to.

    Args:
        models: Names of the served models (the only ``model`` label values).
        store: The job store the training counts are read from at each scrape.
        multiprocess_dir: The directory of prometheus-client's multiprocess
            mode shared by the HTTP workers of one server; ``None`` with a
            single process. prometheus-client writes values where the
            ``PROMETHEUS_MULTIPROC_DIR`` environment variable says: it must
            name the same directory.
    """

    def __init__(
        self,
        models: Sequence[str],
        store: JobStore,
        *,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.models = tuple(models)
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            _use_multiprocess_values()
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self._requests: _Requests | None = None
        if multiprocess_dir is None:
            # Counted for every request: in plain numbers on the event loop,
            # read at each scrape, rather than through a lock each time.
            self._requests = _Requests()
            registry.register(self._requests)
        else:
            self.requests = Counter(
                _REQUESTS,
                _REQUESTS_HELP,
                ("route", "method", "model", "status"),
                registry=registry,
            )
            self.latency = Histogram(
                _LATENCY,
                _LATENCY_HELP,
                ("route", "method", "model"),
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        self.body_bytes = Counter(
            "deepaas_http_request_body_bytes",
            "Bytes of request bodies read (uploads, forms, JSON), by route and model.",
            ("route", "model"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "deepaas_http_requests_in_flight",
            "HTTP requests being answered.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.predictions = Gauge(
            "deepaas_predictions_in_flight",
            "Predictions accepted and not yet answered (running or queued), by model.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "deepaas_predict_queue_length",
            "Predictions waiting for a free worker, by model.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_waits = Histogram(
            "deepaas_predict_queue_wait_seconds",
            "Time predictions waited before they started, by model.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_sizes = Histogram(
            "deepaas_predict_batch_size",
            "Predictions run together in one call of the model, by model.",
            ("model",),
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.worker_restarts = Counter(
            "deepaas_worker_restarts",
            "Worker processes replaced, by pool and reason.",
            ("pool", "reason"),
            registry=registry,
        )
        trainings = _Trainings(store, self.models)
        if multiprocess_dir is None:
            registry.register(trainings)
            self.output: CollectorRegistry = registry
        else:
            # Counted values come from every worker's files; the training counts
            # from the shared store, once: a collector in this registry only.
            self.output = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.output, path=multiprocess_dir)  # type: ignore[no-untyped-call]
            self.output.register(trainings)
        self._waits: dict[str, Histogram] = {}
        self._batches: dict[str, Histogram] = {}

    def request_series(
        self, route: str, method: str, model: str, status: int
    ) -> RequestSeries:
        """Where the requests of one route, method, model and status are recorded.

        Call it once per label values and keep the answer: recording is then
        one call per request, from the event loop's thread.
        """
        if self._requests is not None:
            return self._requests.series(route, method, model, str(status))
        return _SharedSeries(
            self.requests.labels(route, method, model, str(status)),
            self.latency.labels(route, method, model),
        )

    # Telemetry -----------------------------------------------------------------

    def queue_wait(self, model: str, seconds: float) -> None:
        """A prediction of ``model`` waited ``seconds`` before it started."""
        child = self._waits.get(model)
        if child is None:
            child = self._waits[model] = self.queue_waits.labels(model)
        child.observe(seconds)

    def batch(self, model: str, size: int) -> None:
        """``model`` ran a batch of ``size`` predictions in one call."""
        child = self._batches.get(model)
        if child is None:
            child = self._batches[model] = self.batch_sizes.labels(model)
        child.observe(size)

    def worker_restart(self, pool: str, reason: str) -> None:
        """A worker process of ``pool`` was replaced, for ``reason``."""
        self.worker_restarts.labels(pool, reason).inc()

    # Read values ---------------------------------------------------------------

    def sample(self, in_flight: int, predictors: Mapping[str, Predictor]) -> None:
        """Write the values that are read rather than counted."""
        self.in_flight.set(in_flight)
        for name, predictor in predictors.items():
            self.predictions.labels(name).set(predictor.in_flight)
            self.queued.labels(name).set(predictor.queued)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for, and its media type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.output), content_type


_REQUESTS = "deepaas_http_requests"
_REQUESTS_HELP = "HTTP requests answered, by route template, method, model and status."
_LATENCY = "deepaas_http_request_duration_seconds"
_LATENCY_HELP = (
    "Time from a request's arrival to its answer, by route, method and model."
)
_BOUNDS = (*LATENCY_BUCKETS, float("inf"))


class RequestSeries:
    """The requests of one route, method, model and status: their count and times."""

    def record(self, seconds: float) -> None:
        """One more request, answered in ``seconds``."""
        raise NotImplementedError


class _SharedSeries(RequestSeries):
    # Several processes: prometheus-client's values, kept in its shared files.
    __slots__ = ("_count", "_latency")

    def __init__(self, count: Counter, latency: Histogram) -> None:
        self._count = count
        self._latency = latency

    def record(self, seconds: float) -> None:
        self._count.inc()
        self._latency.observe(seconds)


class _Latency:
    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(_BOUNDS)
        self.total = 0.0
        self.created = time.time()


class _LocalSeries(RequestSeries):
    __slots__ = ("count", "created", "latency")

    def __init__(self, latency: _Latency) -> None:
        self.count = 0
        self.created = time.time()
        self.latency = latency

    def record(self, seconds: float) -> None:
        self.count += 1
        latency = self.latency
        latency.total += seconds
        # The first bound at or above: Prometheus buckets are "less or equal".
        latency.buckets[bisect.bisect_left(_BOUNDS, seconds)] += 1


class _Requests:
    """The request count and latency of one process, as a collector.

    Exported exactly as prometheus-client's ``Counter`` and ``Histogram`` of
    the same names and labels would be (``_total``, ``_bucket``, ``_created``...).
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str, str], _LocalSeries] = {}
        self._latencies: dict[tuple[str, str, str], _Latency] = {}

    def series(self, route: str, method: str, model: str, status: str) -> _LocalSeries:
        key = (route, method, model, status)
        found = self._series.get(key)
        if found is None:
            latency = self._latencies.get(key[:3])
            if latency is None:
                latency = self._latencies[key[:3]] = _Latency()
            found = self._series[key] = _LocalSeries(latency)
        return found

    def describe(self) -> Iterable[Metric]:
        return [self._counts(), self._histogram()]

    def collect(self) -> Iterable[Metric]:
        counts = self._counts()
        for key, series in list(self._series.items()):
            counts.add_metric(key, series.count, created=series.created)
        histogram = self._histogram()
        name = _LATENCY
        for (route, method, model), latency in list(self._latencies.items()):
            cumulative = 0
            for bound, count in zip(_BOUNDS, latency.buckets, strict=True):
                cumulative += count
                histogram.add_sample(
                    f"{name}_bucket",
                    {
                        "route": route,
                        "method": method,
                        "model": model,
                        "le": floatToGoString(bound),  # type: ignore[no-untyped-call]
                    },
                    cumulative,
                )
            plain = {"route": route, "method": method, "model": model}
            histogram.add_sample(f"{name}_count", plain, cumulative)
            histogram.add_sample(f"{name}_sum", plain, latency.total)
            histogram.add_sample(f"{name}_created", plain, latency.created)
        return [counts, histogram]

    @staticmethod
    def _counts() -> CounterMetricFamily:
        return CounterMetricFamily(
            _REQUESTS, _REQUESTS_HELP, labels=("route", "method", "model", "status")
        )

    @staticmethod
    def _histogram() -> Metric:
        return Metric(_LATENCY, _LATENCY_HELP, "histogram")


class _Trainings:
    """A collector of the trainings by model and status, read from the job store."""

    def __init__(self, store: JobStore, models: Sequence[str]) -> None:
        self._store = store
        self._models = models

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "deepaas_trainings",
            "Trainings of the served models in the job store, by status.",
            labels=("model", "status"),
        )

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self._store.count_by_status()
        except Exception:
            # The other metrics are still worth answering.
            _LOG.exception("Counting trainings for /metrics failed")
            return []
        family = self._family()
        for model in self._models:
            for status in JobStatus:
                family.add_metric(
                    [model, status.value], counts.get((model, status.value), 0)
                )
        return [family]


def _use_multiprocess_values() -> None:
    """Make metrics created from now on count in the multiprocess directory.

    prometheus-client chooses how values are kept when it is first imported,
    from ``PROMETHEUS_MULTIPROC_DIR``; the command that sets the variable may
    have imported it before (through this package), so choose again.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


InFlight = Callable[[], int]


@requires(Scope.ADMIN)
async def handle_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the metrics, in the format the scraper accepts."""
    app = request.app
    metrics = app[METRICS]
    metrics.sample(app[OBSERVER].in_flight, app[PREDICTORS])
    body, content_type = metrics.render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


@contextlib.asynccontextmanager
async def sampling(
    metrics: Metrics, in_flight: InFlight, predictors: Mapping[str, Predictor]
) -> AsyncIterator[None]:
    """Write the read values every :data:`SAMPLE_INTERVAL_S`, while in the block.

    Only needed with several HTTP workers: a single one samples when scraped.
    """

    async def loop() -> None:
        while True:
            try:
                metrics.sample(in_flight(), predictors)
            except Exception:
                _LOG.exception("Sampling metrics failed")
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
