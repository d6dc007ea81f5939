"""/docs and /redoc served offline (assets from the fastapi-offline wheel), and the index
at / and /v1."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


@pytest.fixture(scope="module")
def bare() -> Iterator[TestClient]:
    """The app without its lifespan: the docs and the index need no database."""
    yield TestClient(create_app(), raise_server_exceptions=False)


def test_docs_load_only_local_assets(bare: TestClient) -> None:
    for page, assets in [
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"]),
        ("/redoc", ["redoc.standalone.js", "favicon.png"]),
    ]:
        r = bare.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", r.text)
        urls += re.findall(r"""url:\s*['"]([^'"]+)""", r.text)
        assert urls and not [u for u in urls if "//" in u], urls  # nothing off this server
        assert "/openapi.json" in r.text
        for asset in assets:
            assert f"/static/docs/{asset}" in r.text
    for asset, kind in [
        ("swagger-ui-bundle.js", "javascript"),
        ("redoc.standalone.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon.png", "image/png"),
    ]:
        r = bare.get(f"/static/docs/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"], asset
        assert len(r.content) > 1000


def test_swagger_ui_is_version_5(bare: TestClient) -> None:
    # the document is OpenAPI 3.1, which Swagger UI renders from version 5 on
    bundle = bare.get("/static/docs/swagger-ui-bundle.js").text
    assert bare.get("/openapi.json").json()["openapi"].startswith("3.1")
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.', bundle)
    assert version and int(version.group(1)) >= 5


@pytest.mark.parametrize("path", ["/", "/v1"])
def test_index_links(bare: TestClient, path: str) -> None:
    r = bare.get(path)
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "DeepZoo"
    links = body["links"]
    for name in ("docs", "openapi", "models", "datasets", "jobs", "health"):
        assert name in links
    for name in ("docs", "openapi", "health"):
        assert bare.get(links[name]).status_code == 200, name
