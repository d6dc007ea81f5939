"""The dashboard's page at / for browsers (content negotiation), its assets in the package,
its Content-Security-Policy; API clients keep the JSON index and /docs keeps working.
The page in a real browser: tests/dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import dashboard
from app.main import create_app

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def bare() -> Iterator[TestClient]:
    """The app without its lifespan: the page and its assets need no database."""
    yield TestClient(create_app(), raise_server_exceptions=False)


def test_a_browser_gets_the_page_with_a_strict_csp(bare: TestClient) -> None:
    r = bare.get("/", headers={"Accept": BROWSER})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert r.headers["vary"] == "Accept"
    # no inline script, style or handler: everything it loads is a file of this server
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert not re.search(r"\s(style|on\w+)=", r.text)
    urls = re.findall(r"""(?:src|href)="([^"]+)""", r.text)
    assert urls and not [u for u in urls if "//" in u]
    for url in urls:
        if url.startswith("dashboard/"):
            asset = bare.get(f"/{url}")
            assert asset.status_code == 200, url
            assert asset.headers["content-security-policy"] == csp


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html"])
def test_api_clients_keep_the_json_index(bare: TestClient, accept: str | None) -> None:
    r = bare.get("/", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["links"]["jobs"] == "/v1/jobs"
    assert r.headers["vary"] == "Accept"


def test_docs_keep_working_without_the_dashboards_csp(bare: TestClient) -> None:
    # Swagger UI runs an inline script: the dashboard's policy must not reach it
    r = bare.get("/docs", headers={"Accept": BROWSER})
    assert r.status_code == 200 and "content-security-policy" not in r.headers
    assert "SwaggerUIBundle" in r.text


def test_every_module_is_served_as_javascript(bare: TestClient) -> None:
    modules = sorted((dashboard.STATIC / "js").glob("*.js"))
    assert {p.name for p in modules} >= {"app.js", "api.js", "chart.js", "form.js", "dom.js"}
    for path in modules:
        r = bare.get(f"/dashboard/js/{path.name}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"], path.name
        # imports are relative: nothing comes from a CDN
        specs = re.findall(r'from\s+"([^"]+)"', r.text)
        for spec in specs:
            assert spec.startswith("./"), (path.name, spec)
    assert bare.get("/dashboard/app.css").headers["content-type"].startswith("text/css")
    assert bare.get("/dashboard/../main.py").status_code == 404


def test_no_markup_is_built_from_strings() -> None:
    # user-supplied names, tags and specs reach the DOM as text only (dom.js's h())
    for path in Path(dashboard.STATIC).rglob("*.js"):
        source = re.sub(r"//.*", "", path.read_text())  # comments may name them
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, (path.name, sink)


def test_the_openapi_document_lists_both_bodies_of_the_index(bare: TestClient) -> None:
    (op,) = bare.get("/openapi.json").json()["paths"]["/"].values()
    content = op["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/html"}
