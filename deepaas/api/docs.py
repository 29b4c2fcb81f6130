"""The API's descriptions and the Swagger UI that shows them.

Routes, all under the configured base path: ``/swagger.json`` (Swagger 2.0, for
2.x clients) and ``/openapi.json`` (OpenAPI 3.1) always; with the documentation
endpoint, ``/api`` (and ``/api/``), its assets under ``/api/static/`` and ``/ui``,
which redirects to ``/api`` as in 2.x. Documents are built once, at setup.

The Swagger UI comes from the installed ``swagger_ui_bundle`` package, never from a
CDN. Swagger UI renders OpenAPI 3.1 from version 5 on; with an older bundle the page
shows the Swagger 2.0 document only.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from deepaas.api.keys import CONFIG, MODELS
from deepaas.api.openapi import build_openapi, build_swagger
from deepaas.api.security.access import PUBLIC, declare, public

__all__ = ["setup_docs", "swagger_ui_dir"]

_LOG = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" type="text/css" href="{static}/swagger-ui.css">
<link rel="stylesheet" type="text/css" href="{static}/index.css">
<link rel="icon" type="image/png" href="{static}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{static}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="{static}/swagger-ui-standalone-preset.js" charset="utf-8"></script>
<script>
window.onload = function () {{
  var options = {options};
  options.dom_id = "#swagger-ui";
  options.presets = [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset];
  options.plugins = [SwaggerUIBundle.plugins.DownloadUrl];
  options.layout = "StandaloneLayout";
  window.ui = SwaggerUIBundle(options);
}};
</script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    """The directory of the installed Swagger UI assets."""
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def _ui_major(directory: Path) -> int:
    # The bundle names its directory after the version: "swagger-ui-4.15.5".
    found = re.search(r"(\d+)\.\d+", directory.name)
    return int(found.group(1)) if found else 0


def setup_docs(
    app: web.Application, *, title: str, version: str, description: str
) -> None:
    """Add the description and documentation routes to ``app`` (the root app).

    Routes are named ``swagger.spec``, ``openapi.spec`` and, with the documentation
    endpoint, ``swagger.docs`` (the page), ``swagger.static`` and ``swagger.ui``.

    Args:
        app: The root application; ``app[CONFIG]`` and ``app[MODELS]`` must be set.
        title: Title of the API.
        version: Version of the API.
        description: Markdown introduction shown on top of the documentation.
    """
    config = app[CONFIG]
    models = app[MODELS]
    base = config.base_path
    info = {"title": title, "version": version, "description": description}
    swagger = _document("Swagger 2.0", lambda: build_swagger(config, models, **info))
    openapi = _document("OpenAPI 3.1", lambda: build_openapi(config, models, **info))
    app.router.add_get(
        f"{base}/swagger.json", swagger, name="swagger.spec", allow_head=False
    )
    app.router.add_get(
        f"{base}/openapi.json", openapi, name="openapi.spec", allow_head=False
    )
    if not config.doc_endpoint:
        return
    assets = swagger_ui_dir()
    static = f"{base}/api/static"
    specs = [{"url": f"{base}/swagger.json", "name": "Swagger 2.0 (2.x clients)"}]
    if _ui_major(assets) >= 5:
        specs.insert(0, {"url": f"{base}/openapi.json", "name": "OpenAPI 3.1"})
    page = _page(title, static, specs)
    app.router.add_get(f"{base}/api", page, name="swagger.docs", allow_head=False)
    app.router.add_get(f"{base}/api/", page, allow_head=False)
    # aiohttp's static resource refuses paths that leave the directory.
    assets_resource = app.router.add_static(f"{static}/", assets, name="swagger.static")
    declare(app, assets_resource, PUBLIC)
    app.router.add_get(
        f"{base}/ui", _redirect(f"{base}/api"), name="swagger.ui", allow_head=False
    )


def _document(what: str, build: Callable[[], dict[str, Any]]) -> Handler:
    try:
        body = json.dumps(build()).encode()
    except Exception:
        # A model whose declarations cannot be described must not stop the server.
        _LOG.exception("Cannot build the %s document", what)
        failure = {"message": f"The {what} document could not be built; see the log"}
        return _bytes(json.dumps(failure).encode(), "application/json", status=500)
    return _bytes(body, "application/json")


def _page(title: str, static: str, specs: list[dict[str, str]]) -> Handler:
    options: dict[str, Any] = {
        "deepLinking": True,
        # The default validator is an external service: no request leaves the page.
        "validatorUrl": None,
    }
    if len(specs) == 1:
        options["url"] = specs[0]["url"]
    else:
        options["urls"] = specs
        options["urls.primaryName"] = specs[0]["name"]
    # "<" escaped so that no value can close the script element.
    script = json.dumps(options).replace("<", "\\u003c")
    text = _PAGE.format(
        title=html.escape(title), static=html.escape(static), options=script
    )
    return _bytes(text.encode(), "text/html")


def _bytes(body: bytes, content_type: str, *, status: int = 200) -> Handler:
    # Public: the UI must load before a token can be entered in it.
    @public
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, status=status, content_type=content_type, charset="utf-8"
        )

    return handler


def _redirect(location: str) -> Handler:
    @public
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler
