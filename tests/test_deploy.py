"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/nginx.conf,
deploy/kubernetes/) against the code they run: settings that exist, commands and
options the CLI has, probe paths the server answers, one migrator, a non-root
image with the web app in it; and `db wait`, which holds a replica until that one
migrator is done."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from taleweaver.api.routes.health import router as health_router
from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.store import migrate
from taleweaver.store.database import Database, sqlite_url

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"

Doc = dict[str, Any]


def compose() -> Doc:
    loaded: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def manifests() -> list[Doc]:
    """Every object kustomization.yaml applies, plus the example Secret."""
    names = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    docs: list[Doc] = []
    for name in [*names, "secret.example.yaml"]:
        docs += [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    return docs


def of_kind(kind: str) -> list[Doc]:
    return [d for d in manifests() if d["kind"] == kind]


def pod_spec(kind: str) -> Doc:
    (workload,) = of_kind(kind)
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def k8s_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for doc in of_kind("ConfigMap"):
        env |= doc["data"]
    for doc in of_kind("Secret"):
        env |= doc["stringData"]
    return env


def server_services() -> dict[str, Doc]:
    services: dict[str, Doc] = compose()["services"]
    return {
        n: s for n, s in services.items() if "taleweaver serve" in " ".join(s.get("command", []))
    }


def setting_exists(variable: str) -> bool:
    """Whether TALEWEAVER_<NAME> (NAME__SUB for nested ones) sets a field of Settings."""
    first = variable.removeprefix("TALEWEAVER_").lower().split("__")[0]
    return first in Settings.model_fields


# --- settings and commands the files name -------------------------------------------------


def test_every_setting_the_files_name_is_one_the_server_reads() -> None:
    # Settings ignore unknown variables: a misspelt one would be silently dropped.
    named = set(k8s_env())
    for service in compose()["services"].values():
        named |= {k for k in service.get("environment", {}) if k.startswith("TALEWEAVER_")}
    named |= set(re.findall(r"\b(TALEWEAVER_[A-Z_]+)=", (ROOT / "Dockerfile").read_text()))
    taleweaver = {name for name in named if name.startswith("TALEWEAVER_")}
    assert taleweaver, "the files set no TALEWEAVER_ variable at all"
    assert sorted(v for v in taleweaver if not setting_exists(v)) == []


def taleweaver_argv(argv: list[str]) -> list[str]:
    """`[exec] taleweaver a b` as `[a, b]`."""
    if argv[:1] == ["exec"]:
        argv = argv[1:]
    assert argv[0] == "taleweaver", argv
    return argv[1:]


def run_argvs() -> list[list[str]]:
    found: list[list[str]] = []
    for service in compose()["services"].values():
        command = service.get("command", [])
        if command[:2] == ["sh", "-c"]:
            found += [
                taleweaver_argv(part.split())
                for part in re.split(r"&&|;", command[2])
                if "taleweaver" in part
            ]
        elif command[:1] == ["taleweaver"]:
            found.append(taleweaver_argv(command))
    for kind in ("Deployment", "Job"):
        spec = pod_spec(kind)
        for container in spec.get("initContainers", []) + spec["containers"]:
            found.append(taleweaver_argv(container["command"]))
    return found


def test_every_command_the_files_run_is_a_command_the_cli_has() -> None:
    argvs = run_argvs()
    assert {" ".join(a[:2]) for a in argvs} >= {"db upgrade", "db wait"}
    assert any(a[0] == "serve" for a in argvs)
    for argv in argvs:
        # An unknown command or option fails parsing (exit 2) before --help answers.
        result = CliRunner().invoke(cli, [*argv, "--help"])
        assert result.exit_code == 0, f"taleweaver {' '.join(argv)}: {result.output}"


def test_the_probes_ask_paths_the_server_answers() -> None:
    answered = {getattr(route, "path", None) for route in health_router.routes}
    (server,) = pod_spec("Deployment")["containers"]
    probes = [server[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")]
    assert set(probes) == {"/healthz"}
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz"} <= answered
    assert "/healthz" in (ROOT / "Dockerfile").read_text()  # the image's HEALTHCHECK


# --- one migrator -------------------------------------------------------------------------


def test_only_one_process_migrates_and_every_replica_waits_for_it() -> None:
    services = compose()["services"]
    servers = server_services()
    assert len(servers) >= 2, "two server replicas"
    migrators = [n for n, s in services.items() if "db upgrade" in " ".join(s.get("command", []))]
    assert migrators == ["migrate"]
    for name, service in servers.items():
        assert service["environment"]["TALEWEAVER_AUTO_MIGRATE"] == "false", name
        assert "db wait" in service["command"][2], name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert k8s_env()["TALEWEAVER_AUTO_MIGRATE"] == "false"
    deployment = pod_spec("Deployment")
    assert [c["command"][1:3] for c in deployment["initContainers"]] == [["db", "wait"]]
    assert pod_spec("Job")["containers"][0]["command"][1:3] == ["db", "upgrade"]


def test_every_replica_shares_one_database_and_one_redis() -> None:
    servers = server_services()
    for key in ("TALEWEAVER_DATABASE_URL", "TALEWEAVER_REDIS_URL", "TALEWEAVER_ENCRYPTION_KEYS"):
        assert len({s["environment"][key] for s in servers.values()}) == 1, key
    assert compose()["services"]["postgres"]["image"].startswith("pgvector/")
    assert {"TALEWEAVER_DATABASE_URL", "TALEWEAVER_REDIS_URL"} <= set(k8s_env())


# --- the load balancer and the cluster objects --------------------------------------------


def test_the_load_balancer_reaches_every_replica_and_passes_websockets() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    upstream = set(re.findall(r"^\s*server\s+([\w-]+):8000", conf, re.MULTILINE))
    assert upstream == set(server_services())
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", conf)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade", conf)
    assert re.search(r"proxy_buffering\s+off", conf)  # tokens go out as they come
    lb = compose()["services"]["lb"]
    assert set(lb["depends_on"]) == set(server_services())


def test_the_cluster_objects_point_at_each_other() -> None:
    (deployment,) = of_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service,) = of_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (pdb,) = of_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    (ingress,) = of_kind("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert backend["port"]["name"] in port_names


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_manifests() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d]
    assert {"Deployment", "Job", "Service", "HorizontalPodAutoscaler"} <= set(kinds)
    assert "Secret" not in kinds  # made by the operator, never applied from the repo


# --- the image ----------------------------------------------------------------------------


def final_stage(dockerfile: str) -> str:
    return dockerfile.split("\nFROM ")[-1]


def test_the_image_runs_as_a_numeric_non_root_user_with_the_web_app_built_in() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    last = final_stage(dockerfile)
    user = re.findall(r"^USER\s+(\d+)(?::(\d+))?", last, re.MULTILINE)
    assert user and int(user[-1][0]) != 0
    for kind in ("Deployment", "Job"):
        assert pod_spec(kind)["securityContext"]["runAsUser"] == int(user[-1][0])
    assert "npm run" in dockerfile and "webapp/index.html" in dockerfile
    assert "build-essential" not in last, "the final stage has no compilers"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "web/node_modules"} <= set(ignored)


# --- db wait ------------------------------------------------------------------------------


def cli_env(data_dir: Path, database_url: str | None = None) -> dict[str, str | None]:
    return {
        "TALEWEAVER_DATA_DIR": str(data_dir),
        "TALEWEAVER_DATABASE_URL": database_url,
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_CONFIG": None,
    }


def revision(data_dir: Path) -> str | None:
    async def read() -> str | None:
        db = Database(sqlite_url(data_dir))
        try:
            return await migrate.current_revision(db.engine)
        finally:
            await db.dispose()

    return asyncio.run(read())


# Sync tests: the CLI runs its own event loop.
def test_a_replica_waits_for_the_migrator_and_never_migrates_itself(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    runner = CliRunner()
    early = runner.invoke(cli, ["db", "wait", "--timeout", "0.5"], env=env)
    assert early.exit_code == 1, early.output
    assert "not at this version's schema" in early.output
    assert revision(tmp_path) is None  # waiting changed nothing
    upgraded = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    ready = runner.invoke(cli, ["db", "wait", "--timeout", "5"], env=env)
    assert ready.exit_code == 0, ready.output
    assert revision(tmp_path) == migrate.head_revision()


def test_a_database_not_up_yet_counts_as_not_migrated(tmp_path: Path) -> None:
    env = cli_env(tmp_path, "postgresql://nobody@127.0.0.1:9/none")  # port 9: nothing there
    result = CliRunner().invoke(cli, ["db", "wait", "--timeout", "0.5"], env=env)
    assert result.exit_code == 1, result.output
    assert "not at this version's schema" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
