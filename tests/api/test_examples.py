"""The files the README and docs/api.md tell a new user to upload are shipped, and
upload as the docs say they do."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "data.csv"


def test_readme_upload_example_ships_and_uploads(client: TestClient) -> None:
    assert "docs/examples/data.csv" in (ROOT / "README.md").read_text()
    with EXAMPLE.open("rb") as f:
        r = client.post(
            "/v1/datasets",
            files={"file": ("data.csv", f, "text/csv")},
            data={"name": "houses", "target": "price"},
        )
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["kind"] == "table" and ds["task"] == "regression"
    assert ds["shape"] == [500, 3] and ds["features"] == ["rooms", "area", "age"]
