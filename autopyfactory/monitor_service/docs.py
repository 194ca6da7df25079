"""``/docs`` (Swagger UI) with every asset served by this service itself.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI, ReDoc, a favicon and fonts from CDNs, so on
a host without internet access they stay blank (and every visit tells the CDN who reads the API).
The Swagger UI assets come from the ``fastapi-offline`` package (which ships Swagger UI 5) and are
mounted at ``/docs-assets``; the validator badge, which calls validator.swagger.io, is off.
There is no ``/redoc``: ReDoc fetches its logo from its CDN whatever the options.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(str(files("fastapi_offline") / "static"))
PREFIX = "/docs-assets"


def install(app: FastAPI) -> None:
    """Add ``/docs`` and its assets; create ``app`` with docs_url=redoc_url=None."""
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
