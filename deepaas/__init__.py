"""DEEP as a Service: a documented HTTP API in front of a machine learning model."""

from importlib import metadata as _metadata

__all__ = ["__version__", "extract_version"]

try:
    __version__ = _metadata.version("deepaas")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
    __version__ = "0.0.0"


def extract_version() -> str:
    """Return the installed version of deepaas (the name 2.x modules call)."""
    return __version__
