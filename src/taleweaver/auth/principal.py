"""Who is making a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LOCAL_USER_ID = "local"

Via = Literal["local", "session", "api_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    email: str
    via: Via
    is_instance_admin: bool = False
    # For API keys: what the key may do, and the one workspace it is limited to.
    scopes: frozenset[str] | None = None
    key_workspace: str | None = None
    key_id: str | None = None
    # For login sessions: the token a state-changing request must echo back.
    csrf_token: str | None = None
