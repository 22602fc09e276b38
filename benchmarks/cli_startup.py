"""Wall time of `taleweaver` commands from exec to exit, against `python -c pass`
measured in the same run (what any Python program pays to start).

`--version`, `--help` and each command's `--help` import no feature module (nor
SQLAlchemy, pydantic, httpx or numpy); `sessions list` and `characters list` open
the engine on an empty SQLite data dir. Target: every command under 1 s (p50).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentile, summary, verdict

RUNS = 7
TARGET_MS = 1000.0
COMMANDS = (
    ["--version"],
    ["--help"],
    ["play", "--help"],
    ["import", "--help"],
    ["backup", "--help"],
    ["safety", "--help"],
    ["sessions", "list"],
    ["characters", "list"],
)


def _time(argv: list[str], env: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run() -> bool:
    print("== CLI start-up (exec to exit)")
    script = str(Path(sys.executable).with_name("taleweaver"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
        env |= {"TALEWEAVER_DATA_DIR": tmp, "TALEWEAVER_MODEL": "scripted"}
        # Cached bytecode, as an installed CLI runs: with PYTHONDONTWRITEBYTECODE set
        # (CI, containers) every run would compile the source tree again (~0.3 s).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        subprocess.run([script, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
        baseline = _time([sys.executable, "-c", "pass"], env)
        print(f"  python -c pass      : {summary(baseline)}")
        ok = True
        for args in COMMANDS:
            samples = _time([script, *args], env)
            p50 = percentile(samples, 50)
            ok = ok and p50 < TARGET_MS
            ratio = p50 / percentile(baseline, 50)
            print(f"  {' '.join(args):<20}: {summary(samples)}  ({ratio:.1f}x baseline)")
    print(f"  target              : p50 < {TARGET_MS:.0f} ms each -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
