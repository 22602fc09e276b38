"""The crisis rules file: found, parsed, and reloaded when it changes on disk.

`TALEWEAVER_SAFETY_RULES` names a rules file to use instead of the shipped one.
The file's modification time is looked at (at most once a second) before rules
are used, so an edited file takes effect without a restart; `reload()` does it
at once and reports a bad file instead of keeping the old rules silently.
"""

from __future__ import annotations

import logging
import time
import tomllib
from importlib import resources
from pathlib import Path

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import RuleSet, compile_rules

log = logging.getLogger(__name__)

RULES_ENV = "TALEWEAVER_SAFETY_RULES"  # read by taleweaver.config.SafetySettings
CHECK_EVERY_S = 1.0


def shipped_rules_path() -> Path:
    return Path(str(resources.files("taleweaver.safety").joinpath("data", "rules.toml")))


def load_rules(path: Path) -> RuleSet:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read the safety rules at {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"the safety rules at {path} are not valid TOML: {exc}") from exc
    return compile_rules(data)


class RulesProvider:
    def __init__(self, path: Path | None = None) -> None:
        # The settings bring pydantic, which `taleweaver safety --help` must not wait for.
        from taleweaver.config import SafetySettings

        self.path = path or SafetySettings.read().safety_rules or shipped_rules_path()
        self._mtime = self._stat()
        self._rules = load_rules(self.path)
        self._checked = time.monotonic()

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return -1.0

    @property
    def version(self) -> str:
        return self._rules.version

    def current(self) -> RuleSet:
        """The rules, re-read first if the file changed; a broken edit keeps the old rules."""
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                try:
                    self.reload()
                except InvalidInput as exc:
                    self._mtime = mtime  # report a broken file once, not on every turn
                    log.error(
                        "safety rules not reloaded, keeping version %s: %s",
                        self._rules.version,
                        exc.detail,
                    )
        return self._rules

    def reload(self) -> RuleSet:
        """Re-read the file now; `InvalidInput` (and the old rules kept) when it is bad."""
        mtime = self._stat()
        rules = load_rules(self.path)
        self._rules, self._mtime, self._checked = rules, mtime, time.monotonic()
        log.info("safety rules version %s loaded from %s", rules.version, self.path)
        return rules
