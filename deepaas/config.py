"""The typed configuration every layer below ``deepaas.cmd`` receives.

``deepaas.cmd.opts`` parses oslo.config options into a :class:`Config` once; nothing
else reads the command line, configuration files or the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from deepaas.exceptions import ConfigurationError

__all__ = [
    "AUTH_MODES",
    "EVENT_LOOPS",
    "EXECUTORS",
    "JOB_STORES",
    "LOG_FORMATS",
    "SHUTDOWN_TRAININGS",
    "Config",
    "is_loopback",
]

JOB_STORES = ("sqlite", "memory")
EXECUTORS = ("auto", "thread", "async", "process")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
AUTH_MODES = ("auto", "none")
LOG_FORMATS = ("plain", "json")
SHUTDOWN_TRAININGS = ("interrupt", "finish")
# 1 GiB: uploads are streamed to disk, so this bounds disk use per request, not
# memory; large enough for the images, audio and archives models take.
DEFAULT_CLIENT_MAX_SIZE = 1024**3


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of one deepaas server.

    Defaults are those of DEEPaaS 2.x where it had the setting, except
    ``client_max_size`` (unlimited in 2.x).

    Attributes:
        listen_ip: Address to bind.
        listen_port: Port to bind.
        base_path: Prefix of every route, e.g. ``/deepaas`` behind a proxy.
        model_names: Models to serve; empty means every installed model.
        workers: Concurrent predictions per model: threads, or worker processes
            with the ``process`` executor.
        executor: Where each model's ``predict`` runs: ``"auto"`` (a pool of
            ``workers`` threads, from which a model whose calls stay under
            ``inline_threshold_us`` moves onto the event loop), ``"thread"``
            (always the threads), ``"async"`` (the same, declared for coroutine
            models; coroutines always run on the event loop) or ``"process"``
            (``workers`` spawned processes, each holding its own warmed copy of
            the model).
        inline_threshold_us: With ``"auto"``, microseconds a call may take for
            the model to be called on the event loop; 0 never does.
        max_queue: Predictions that may wait for a free worker, per model; more
            are refused with :class:`~deepaas.exceptions.Overloaded`. 0 means
            no limit.
        predict_timeout: Seconds a prediction may take, waiting included; 0
            means no limit.
        max_batch_size: Most predictions handed at once to a model's
            ``predict_batch``; 1 (the default) turns dynamic batching off. Models
            without ``predict_batch`` are never batched.
        max_batch_delay_ms: Milliseconds the first prediction of a batch may
            wait for others while the model is busy.
        gpus: GPU ids handed round-robin to worker processes as
            ``CUDA_VISIBLE_DEVICES`` (``process`` executor only).
        train_gpus: GPU ids handed round-robin to each model's training
            worker processes as ``CUDA_VISIBLE_DEVICES``; may differ from
            ``gpus`` so that trainings and predictions use separate devices.
        event_loop: The asyncio event loop the server runs on: ``"uvloop"``,
            ``"asyncio"`` (the standard library's), or ``"auto"``: uvloop
            where it is installed (a dependency on Linux and macOS).
        http_workers: Server processes answering HTTP requests; above 1,
            ``deepaas-run`` serves with gunicorn and the processes share the job
            store in ``state_dir``.
        warm: Call each model's ``warm()`` at start-up.
        debug: Verbose logging.
        debug_endpoint: Serve captured output at ``/v2/debug/``.
        force_debug_endpoint: Allow the debug endpoint on an address that is not
            loopback (refused otherwise).
        auth: ``"auto"``: bearer tokens are required when tokens or an OIDC
            issuer are configured, and must be configured to listen on an
            address that is not loopback; ``"none"``: no authentication
            anywhere, explicitly.
        auth_token_file: File of static bearer tokens and their scopes.
        auth_tokens: Static bearer tokens in the token file's format (from the
            ``DEEPAAS_TOKENS`` environment variable); never shown in ``repr``.
        oidc_issuer: Accept JWTs issued by this OpenID Connect issuer.
        oidc_audience: Audiences a JWT must be issued for (one is enough).
        oidc_jwks_file: Local JWKS file with the issuer's keys (offline).
        oidc_jwks_uri: Where to fetch the issuer's keys; by default the
            ``jwks_uri`` of the issuer's discovery document.
        oidc_scope_claims: Claims holding a JWT's scopes; the first present wins.
        oidc_scope_prefix: Prefix of deepaas's scopes in those claims.
        cors_origins: Origins allowed to call the API from a browser (``*`` for
            any); empty turns CORS off.
        doc_endpoint: Serve the Swagger UI at ``/api``.
        train_endpoint: Serve the training routes.
        predict_endpoint: Serve the predict routes.
        client_max_size: Largest request body in bytes; 0 means unlimited.
        max_file_size: Largest uploaded file in bytes, each; 0 means only
            ``client_max_size`` applies.
        max_form_fields: Most query parameters and form fields (multipart parts
            or urlencoded pairs) in one request; 0 means no limit.
        max_header_size: Longest request line or header line, in bytes.
        max_headers: Most header lines in one request.
        header_timeout: Seconds a connection may go without sending a complete
            request head (request line and headers): counted from when it
            opened, or from the end of its previous answer.
        body_timeout: Seconds a request body may go without sending more data
            while it is read; 0 means no limit.
        shutdown_grace: Seconds requests in progress get to finish once the
            server is asked to stop.
        shutdown_trainings: What a stopping server does with running
            trainings: ``"interrupt"`` them, or let them ``"finish"``.
        max_train_processes: Trainings running at once; more wait.
        plugins: Server plugins to load, by name; ``None`` loads every installed one.
        log_level: Logging level name.
        log_file: Log to this file instead of standard error.
        log_format: ``"plain"`` (text lines) or ``"json"`` (one JSON object a
            line), for every log line, access lines included.
        access_log: Log one line per HTTP request.
        access_log_probes: Log requests to ``/healthz``, ``/readyz`` and
            ``/metrics`` too.
        metrics_endpoint: Record Prometheus metrics and serve them at
            ``/metrics``.
        state_dir: Directory for what outlives the server: the job database and
            training logs. ``None`` keeps nothing on disk (jobs in memory);
            ``deepaas-run`` always sets it.
        job_store: Where job records live: ``"sqlite"`` (a database in
            ``state_dir``) or ``"memory"`` (lost when the server stops).
    """

    listen_ip: str = "127.0.0.1"
    listen_port: int = 5000
    base_path: str = ""
    model_names: tuple[str, ...] = ()
    workers: int = 1
    http_workers: int = 1
    event_loop: str = "auto"
    executor: str = "auto"
    inline_threshold_us: int = 200
    max_queue: int = 64
    predict_timeout: float = 0.0
    max_batch_size: int = 1
    max_batch_delay_ms: float = 5.0
    gpus: tuple[str, ...] = ()
    train_gpus: tuple[str, ...] = ()
    warm: bool = True
    debug: bool = False
    debug_endpoint: bool = False
    force_debug_endpoint: bool = False
    auth: str = "auto"
    auth_token_file: str | None = None
    auth_tokens: str = dataclasses.field(default="", repr=False)
    oidc_issuer: str | None = None
    oidc_audience: tuple[str, ...] = ()
    oidc_jwks_file: str | None = None
    oidc_jwks_uri: str | None = None
    oidc_scope_claims: tuple[str, ...] = ("scope", "scp")
    oidc_scope_prefix: str = ""
    cors_origins: tuple[str, ...] = ()
    doc_endpoint: bool = True
    train_endpoint: bool = True
    predict_endpoint: bool = True
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE
    max_file_size: int = 0
    max_form_fields: int = 1000
    max_header_size: int = 8190
    max_headers: int = 128
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    shutdown_grace: float = 20.0
    shutdown_trainings: str = "interrupt"
    max_train_processes: int = 1
    plugins: tuple[str, ...] | None = None
    log_level: str = "INFO"
    log_file: str | None = None
    log_format: str = "plain"
    access_log: bool = True
    access_log_probes: bool = False
    metrics_endpoint: bool = True
    state_dir: str | None = None
    job_store: str = "sqlite"

    def __post_init__(self) -> None:
        base = self.base_path.rstrip("/")
        if base and not base.startswith("/"):
            raise ConfigurationError(
                f"base_path must start with '/', got {self.base_path!r}"
            )
        if "//" in base:
            raise ConfigurationError(f"base_path has an empty segment: {base!r}")
        object.__setattr__(self, "base_path", base)
        self._check_values(_FIRST_CHECKS)
        object.__setattr__(self, "gpus", _unique(self.gpus))
        object.__setattr__(self, "train_gpus", _unique(self.train_gpus))
        if self.gpus and self.executor != "process":
            raise ConfigurationError("gpus needs the 'process' executor")
        self._check_values(_THEN_CHECKS)
        if not 0 < self.listen_port < 65536:
            raise ConfigurationError(f"listen_port out of range: {self.listen_port}")
        self._check_values(_LAST_CHECKS)
        object.__setattr__(self, "model_names", _unique(self.model_names))
        self._check_security()

    def _check_values(self, checks: tuple[tuple[str, _Check], ...]) -> None:
        for name, check in checks:
            value = getattr(self, name)
            if isinstance(check, tuple):
                if value not in check:
                    raise ConfigurationError(
                        f"{name} must be one of {', '.join(check)}, got {value!r}"
                    )
            elif not check(value):
                raise ConfigurationError(
                    f"{name} must be {_BOUND_TEXT[check]}, got {value}"
                )

    @property
    def auth_enabled(self) -> bool:
        """Whether requests to protected routes need a bearer token."""
        return self.auth != "none" and bool(
            self.auth_token_file or self.auth_tokens.strip() or self.oidc_issuer
        )

    def _check_security(self) -> None:
        for name in ("oidc_audience", "oidc_scope_claims"):
            object.__setattr__(self, name, _unique(getattr(self, name)))
        origins = _unique([_origin(o) for o in self.cors_origins if o.strip()])
        object.__setattr__(self, "cors_origins", origins)
        self._check_values((("auth", AUTH_MODES),))
        configured = [
            name
            for name in ("auth_token_file", "auth_tokens", "oidc_issuer")
            if (getattr(self, name) or "").strip()
        ]
        if self.auth == "none" and configured:
            raise ConfigurationError(
                f"auth is 'none' but {', '.join(configured)} is set: "
                "remove one or the other"
            )
        if self.oidc_issuer:
            if not self.oidc_audience:
                raise ConfigurationError("oidc_issuer needs oidc_audience")
            if self.oidc_jwks_file and self.oidc_jwks_uri:
                raise ConfigurationError(
                    "give oidc_jwks_file or oidc_jwks_uri, not both"
                )
            if not self.oidc_scope_claims:
                raise ConfigurationError("oidc_scope_claims must not be empty")
        else:
            stray = [
                name
                for name in ("oidc_audience", "oidc_jwks_file", "oidc_jwks_uri")
                if getattr(self, name)
            ]
            if stray:
                raise ConfigurationError(f"{', '.join(stray)} needs oidc_issuer")
        if is_loopback(self.listen_ip):
            return
        if self.auth == "auto" and not self.auth_enabled:
            raise ConfigurationError(
                f"refusing to listen on {self.listen_ip}, which is not a loopback "
                "address, without authentication: give bearer tokens "
                "(--auth-token-file or the DEEPAAS_TOKENS environment variable) or "
                "--oidc-issuer, or serve without authentication on purpose with "
                "--auth none (DEEPAAS_AUTH=none)"
            )
        if self.debug_endpoint and not self.force_debug_endpoint:
            raise ConfigurationError(
                f"refusing to serve the debug endpoint on {self.listen_ip}, which "
                "is not a loopback address: it shows the server's whole output; "
                "add --force-debug-endpoint to serve it anyway"
            )

    def replace(self, **changes: object) -> Config:
        """Return a copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _at_least_1(value: float) -> bool:
    return value >= 1


def _not_negative(value: float) -> bool:
    return value >= 0


def _positive(value: float) -> bool:
    return value > 0


# A check is the allowed values, or a bound (one of the functions above).
_Check = tuple[str, ...] | Callable[[float], bool]
_BOUND_TEXT: dict[Callable[[float], bool], str] = {
    _at_least_1: "at least 1",
    _not_negative: "0 or more",
    _positive: "more than 0",
}
# The checks of Config.__post_init__, in the order they are made.
_FIRST_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("workers", _at_least_1),
    ("http_workers", _at_least_1),
    ("event_loop", EVENT_LOOPS),
    ("executor", EXECUTORS),
    ("inline_threshold_us", _not_negative),
    ("max_queue", _not_negative),
    ("predict_timeout", _not_negative),
    ("max_batch_size", _at_least_1),
    ("max_batch_delay_ms", _not_negative),
)
_THEN_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("max_train_processes", _at_least_1),
    ("client_max_size", _not_negative),
    ("max_file_size", _not_negative),
    ("max_form_fields", _not_negative),
    ("body_timeout", _not_negative),
    ("max_header_size", _positive),
    ("max_headers", _positive),
    ("header_timeout", _positive),
    ("shutdown_grace", _not_negative),
    ("shutdown_trainings", SHUTDOWN_TRAININGS),
)
_LAST_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("job_store", JOB_STORES),
    ("log_format", LOG_FORMATS),
)


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip()
        if name:
            seen.setdefault(name, None)
    return tuple(seen)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> str:
    """``value`` as browsers write an ``Origin`` header, or ``*``."""
    value = value.strip()
    if value == "*":
        return value
    try:
        parts = urlsplit(value.rstrip("/"))
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigurationError(
            f"cors_origins: {value!r} is not an origin such as "
            "'https://example.org' or 'http://localhost:8080', nor '*'"
        )
    scheme = parts.scheme.lower()
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
