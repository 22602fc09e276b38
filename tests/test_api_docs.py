"""/docs works offline: Swagger UI's page names no other host, and every file it
loads comes from this server."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx


def test_the_docs_page_loads_only_from_this_server(serve: Callable[..., httpx.Client]) -> None:
    client = serve()
    page = client.get("/docs")
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    assert not re.search(r"(https?:)?//", page.text), "the page names another host"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {a.rsplit(".", 1)[-1] for a in assets} >= {"js", "css", "png"}
    for asset in assets:
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content, asset
    assert f"url: '{'/openapi.json'}'" in page.text
    assert client.get("/openapi.json").json()["info"]["title"] == "Taleweaver"


def test_the_docs_page_may_run_only_its_own_scripts(serve: Callable[..., httpx.Client]) -> None:
    policy = serve().get("/docs").headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline';" in policy
    assert "http" not in policy
