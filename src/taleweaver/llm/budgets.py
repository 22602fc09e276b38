"""Budgets: spending limits per workspace (calendar month, UTC) and per session,
which warn at a fraction of the limit and stop model calls at it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from taleweaver.domain.errors import BudgetExceeded
from taleweaver.llm.config import BudgetSettings
from taleweaver.llm.ledger import UsageLedger

__all__ = ["BudgetStatus", "Budgets", "month_start"]

Level = Literal["ok", "warning", "exceeded"]


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    scope: Literal["workspace", "session"]
    limit_usd: float
    spent_usd: float
    warn_at: float
    period: str

    @property
    def level(self) -> Level:
        if self.spent_usd >= self.limit_usd:
            return "exceeded"
        if self.spent_usd >= self.limit_usd * self.warn_at:
            return "warning"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "period": self.period,
            "limit_usd": self.limit_usd,
            "spent_usd": round(self.spent_usd, 6),
            "remaining_usd": round(max(0.0, self.limit_usd - self.spent_usd), 6),
            "warn_at": self.warn_at,
            "level": self.level,
        }


class Budgets:
    def __init__(
        self,
        limits: BudgetSettings,
        ledger: UsageLedger,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = limits
        self.ledger = ledger
        self._clock = clock

    @property
    def configured(self) -> bool:
        return self.limits.workspace_usd is not None or self.limits.session_usd is not None

    async def status(self, workspace_id: str, session_id: str | None) -> list[BudgetStatus]:
        found: list[BudgetStatus] = []
        warn = self.limits.warn_at
        if self.limits.workspace_usd is not None:
            start = month_start(self._clock())
            spent = await self.ledger.totals(workspace_id, since=start)
            period = start.strftime("%Y-%m")
            found.append(
                BudgetStatus("workspace", self.limits.workspace_usd, spent.cost_usd, warn, period)
            )
        if self.limits.session_usd is not None and session_id is not None:
            spent = await self.ledger.totals(workspace_id, session_id=session_id)
            found.append(
                BudgetStatus("session", self.limits.session_usd, spent.cost_usd, warn, "lifetime")
            )
        return found

    async def enforce(self, workspace_id: str, session_id: str | None) -> None:
        """Raise `BudgetExceeded` when a limit has been reached: no call may start."""
        if not self.configured:
            return
        for budget in await self.status(workspace_id, session_id):
            if budget.level == "exceeded":
                raise BudgetExceeded(
                    f"the {budget.scope} budget of ${budget.limit_usd:.2f} "
                    f"({budget.period}) is spent (${budget.spent_usd:.4f}); "
                    "raise budgets." + f"{budget.scope}_usd to go on"
                )
