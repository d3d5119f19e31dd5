"""/docs and /redoc from local files (no CDN), and what the OpenAPI document declares."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support import embedded


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with embedded(tmp_path_factory.mktemp("docs"), start=False) as (container, pipeline), \
            TestClient(create_app(container, pipeline=pipeline)) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
    assert urls, r.text
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls  # no CDN, no external font
    assert "cdn.jsdelivr.net" not in r.text and "fonts.googleapis.com" not in r.text
    for asset in (u for u in urls if u.startswith("/docs-assets/")):
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000, asset


def test_assets_route_serves_only_the_bundled_files(client: TestClient) -> None:
    assert client.get("/docs-assets/__init__.py").status_code == 404
    assert client.get("/docs-assets/..%2Fcore.py").status_code == 404


def test_openapi_declares_security_and_the_ingest_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert (schemes["apiToken"]["type"], schemes["apiToken"]["scheme"]) == ("http", "bearer")
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == "yuqing_session"
    ingest = schema["paths"]["/api/v1/ingest"]["post"]
    assert {"apiToken": []} in ingest["security"]
    body = ingest["requestBody"]
    # Any JSON is taken (a bad record is dead-lettered, not the request refused); the record's shape is named.
    assert body["content"]["application/json"]["schema"] == {}
    assert "IngestRecord" in body["description"]
    assert body["content"]["application/json"]["example"][0]["source"] == "weibo"
    record = schema["components"]["schemas"]["IngestRecord"]
    assert {"source", "external_id", "text", "published_at"} <= set(record["required"])
    assert "hotline" in record["properties"]["source"]["enum"]
    assert "security" not in schema["paths"]["/health"]["get"]  # public
    # The error answers are documented in the same document (both builders' parts survive).
    assert {"401", "403", "413"} <= set(ingest["responses"])
    assert "409" in schema["paths"]["/api/v1/dashboard/users"]["post"]["responses"]


def test_assets_exist_in_the_installed_package() -> None:
    from api.routes.apidocs import _ASSETS, assets_dir

    for name in _ASSETS:
        assert (assets_dir() / name).is_file(), name


