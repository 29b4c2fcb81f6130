"""``deepaas-run``: serve the installed models over HTTP."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import deepaas
from deepaas.cmd import opts, serving
from deepaas.cmd._loops import loop_name
from deepaas.cmd.bootstrap import build_app
from deepaas.config import Config
from deepaas.exceptions import DeepaasError
from deepaas.log import setup_logging

__all__ = ["main"]

_LOG = logging.getLogger("deepaas")

BANNER = """\
DEEPaaS API {version}

    API documentation: {base}/api
    API specification: {base}/swagger.json (Swagger 2.0)
                       {base}/openapi.json (OpenAPI 3.1)
          V2 endpoint: {base}/v2/
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; return the exit code."""
    try:
        config = opts.load_config(sys.argv[1:] if argv is None else argv)
        loop = loop_name(config.event_loop)
    except DeepaasError as exc:
        print(f"deepaas-run: {exc.message}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_file, config.log_format)
    if config.http_workers > 1:
        _print_banner(config)
        _LOG.info(
            "Starting DEEPaaS version %s with %d HTTP workers (event loop: %s)",
            deepaas.__version__,
            config.http_workers,
            loop,
        )
        # Imported here: gunicorn is needed only with several workers.
        from deepaas.cmd import gunicorn

        return gunicorn.serve(config)
    # Every request's uploads go in here, removed at exit, even a forced one.
    scratch_dir = serving.make_scratch_dir()
    try:
        try:
            app = build_app(config, upload_dir=scratch_dir)
        except DeepaasError as exc:
            print(f"deepaas-run: {exc.message}", file=sys.stderr)
            return 1
        _print_banner(config)
        _LOG.info(
            "Starting DEEPaaS version %s (event loop: %s)", deepaas.__version__, loop
        )
        return serving.serve(
            app,
            config,
            scratch_dir=scratch_dir,
            # The application logs its own access lines (deepaas.api.observe).
            access_log=None,
        )
    finally:
        serving.remove_scratch_dir(scratch_dir)


def _print_banner(config: Config) -> None:
    base = f"http://{config.listen_ip}:{config.listen_port}{config.base_path}"
    print(BANNER.format(version=deepaas.__version__, base=base), flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
