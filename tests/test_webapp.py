"""The web app is served at `/` beside the API, and the API is unaffected by it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from taleweaver.api import create_app
from taleweaver.config import Settings

INDEX = '<!doctype html><title>Taleweaver</title><script src="/assets/app-1a2b.js"></script>'


@pytest.fixture
def built(tmp_path: Path) -> Path:
    folder = tmp_path / "webapp"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "assets" / "app-1a2b.js").write_text("console.log('hi')")
    (folder / "manifest.webmanifest").write_text("{}")
    (tmp_path / "secret.txt").write_text("not for the web")
    return folder


async def client_for(settings: Settings, folder: Path) -> httpx.AsyncClient:
    app = create_app(settings, webapp=folder)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


@pytest.fixture
async def web(settings: Settings, built: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(settings, built) as client:
        yield client


async def test_root_serves_the_app_and_revalidates_it(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["cache-control"] == "no-cache"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers.get_list("content-security-policy") == [policy]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/s/0123abcd", "/characters", "/world/w1/entities/e2"])
async def test_client_routes_fall_back_to_the_app(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 200
    assert response.text == INDEX


async def test_hashed_assets_are_cached_for_a_year(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/app-1a2b.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    other = await web.get("/manifest.webmanifest")
    assert other.headers["cache-control"] == "no-cache"


async def test_a_missing_asset_is_not_found(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/gone-9z9z.js")
    assert response.status_code == 404


async def test_files_outside_the_build_are_never_served(web: httpx.AsyncClient) -> None:
    response = await web.get("/%2e%2e/secret.txt")
    assert "not for the web" not in response.text


async def test_api_paths_are_untouched(web: httpx.AsyncClient) -> None:
    response = await web.get("/api/v1/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    posted = await web.post("/s/0123abcd", json={})
    assert posted.status_code in (404, 405)
    assert INDEX not in posted.text


async def test_without_a_build_a_page_says_how_to_make_one(
    settings: Settings, tmp_path: Path
) -> None:
    async with await client_for(settings, tmp_path / "absent") as client:
        response = await client.get("/s/anything")
    assert response.status_code == 200
    assert "make run" in response.text
    assert response.headers["content-type"].startswith("text/html")
