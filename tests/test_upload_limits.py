"""Upload limits as the server applies them over HTTP, and as the README states them:
an import (`POST .../import`) may carry up to TALEWEAVER_MAX_UPLOAD_BYTES, any other
body up to TALEWEAVER_MAX_BODY_BYTES, and each format its own tighter limits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from taleweaver.config import Settings
from taleweaver.interop import archive
from taleweaver.interop.cards import limits as card_limits
from taleweaver.interop.limits import max_import_bytes

API = "/api/v1"
README = Path(__file__).resolve().parents[1] / "README.md"
Serve = Callable[..., httpx.Client]


def big_lorebook(entries: int) -> bytes:
    book = {
        "entries": {
            str(i): {"uid": i, "key": [f"k{i}"], "content": "Lore. " * 40} for i in range(entries)
        }
    }
    return json.dumps(book).encode()


def test_an_import_may_be_larger_than_the_request_body_limit(serve: Serve) -> None:
    client = serve()
    data = big_lorebook(400)
    assert len(data) > Settings().max_body_bytes

    response = client.post(
        f"{API}/lorebooks/import", content=data, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["entries"] == 400


def test_an_import_over_the_upload_limit_is_a_413_and_writes_nothing(serve: Serve) -> None:
    client = serve(max_upload_bytes=50_000)

    response = client.post(
        f"{API}/lorebooks/import",
        content=big_lorebook(400),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert "50000" in response.json()["detail"]
    assert client.get(f"{API}/lorebooks").json() == []


def test_any_other_body_over_the_body_limit_is_a_413(serve: Serve) -> None:
    client = serve(max_body_bytes=2_000)

    response = client.post(
        f"{API}/sessions", json={"kind": "story", "settings": {"premise": "x" * 3_000}}
    )

    assert response.status_code == 413
    assert client.get(f"{API}/sessions").json()["total"] == 0


def _readme_default(variable: str) -> str:
    found = re.search(rf"^\| `{variable}` \| `([^`]+)` \|", README.read_text(), re.MULTILINE)
    assert found is not None, f"the README's settings table does not list {variable}"
    return found.group(1)


def test_the_readme_states_the_limits_the_server_applies() -> None:
    defaults = Settings()

    assert int(_readme_default("TALEWEAVER_MAX_BODY_BYTES")) == defaults.max_body_bytes
    assert int(_readme_default("TALEWEAVER_MAX_UPLOAD_BYTES")) == defaults.max_upload_bytes
    assert int(_readme_default("TALEWEAVER_IMPORT_MAX_BYTES")) == max_import_bytes()
    assert int(_readme_default("TALEWEAVER_CARD_MAX_BYTES")) == card_limits.max_file_bytes()
    assert int(_readme_default("TALEWEAVER_CARD_MAX_JSON_BYTES")) == (
        card_limits.max_json_bytes()
    )
    assert int(_readme_default("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES")) == (
        archive.bundle_limits().max_total_bytes
    )
    assert int(_readme_default("TALEWEAVER_BACKUP_MAX_INFLATED_BYTES")) == (
        archive.backup_limits().max_total_bytes
    )
