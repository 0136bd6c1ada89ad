"""docker-compose.yml's ``milvus`` profile (the item index in a Milvus standalone service), checked
statically: no registry is reachable here, so the stack has not run with it (docs/operations.md, "Beyond one
machine")."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from app.startup import milvus_target

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DEFAULT = {name for name, service in SERVICES.items() if "profiles" not in service}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` (default when unset or empty) and ``${VAR}``."""
    return re.sub(
        r"\$\{(\w+)(?::-([^}]*))?\}", lambda match: env.get(match.group(1)) or match.group(2) or "", value
    )


def test_the_milvus_service_runs_only_under_its_profile_with_a_health_check() -> None:
    milvus = SERVICES["milvus"]
    assert milvus["profiles"] == ["milvus"]
    assert [name for name, service in SERVICES.items() if "profiles" in service] == ["milvus"]
    assert re.fullmatch(r"milvusdb/milvus:v2\.5\.\d+", milvus["image"])
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_USE_EMBED"] == "true"  # standalone without an etcd service
    assert milvus["environment"]["COMMON_STORAGETYPE"] == "local"  # ... and without MinIO
    assert milvus["healthcheck"]["test"] == ["CMD", "curl", "-f", "http://localhost:9091/healthz"]
    assert milvus["healthcheck"]["start_period"]
    volume = milvus["volumes"][0].split(":")
    assert volume[1] == "/var/lib/milvus" and volume[0] in COMPOSE["volumes"]


def test_the_default_services_never_need_milvus() -> None:
    """Without the profile, no default service waits for (or pulls in) the milvus service."""
    assert {"api", "worker", "redis", "prometheus", "grafana"} == DEFAULT
    for name in DEFAULT:
        for dependency, condition in SERVICES[name].get("depends_on", {}).items():
            if dependency not in DEFAULT:
                assert condition.get("required") is False, f"{name} needs {dependency} unconditionally"
    assert all("milvus" not in service.get("depends_on", {}) for service in SERVICES.values())


def test_the_milvus_override_makes_the_api_wait_for_a_healthy_milvus() -> None:
    override = yaml.safe_load((ROOT / "docker" / "compose.milvus.yml").read_text())
    assert override == {"services": {"api": {"depends_on": {"milvus": {"condition": "service_healthy"}}}}}


def _settings_from(service: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a service's container gets, with ``env`` as the host's environment."""
    for variable, value in SERVICES[service]["environment"].items():
        if variable.startswith("TANDEM_"):
            monkeypatch.setenv(variable, _interpolate(str(value), env))
    return Settings()


@pytest.mark.parametrize("service", ["api", "worker"])
def test_the_backend_defaults_to_faiss_and_milvus_points_at_the_service(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = SERVICES[service]["environment"]
    assert environment["TANDEM_INDEX_BACKEND"] == "${TANDEM_INDEX_BACKEND:-faiss}"
    default = _settings_from(service, {}, monkeypatch)
    assert default.index_backend == "faiss" and milvus_target(default) is None
    chosen = _settings_from(service, {"TANDEM_INDEX_BACKEND": "milvus"}, monkeypatch)
    target = milvus_target(chosen)
    assert target is not None and target.uri == "http://milvus:19530"
    host, port = target.uri.removeprefix("http://").split(":")
    assert host in SERVICES and port == "19530"  # Milvus' gRPC port inside the compose network
    external = _settings_from(
        service,
        {"TANDEM_INDEX_BACKEND": "milvus", "TANDEM_MILVUS_URI": "http://m.example:19530"},
        monkeypatch,
    )
    assert external.milvus_uri == "http://m.example:19530"


def _dockerfile_requirements(extras: str) -> list[str]:
    """What the Dockerfile's venv stage installs, by running its own script with ``EXTRAS``."""
    dockerfile = (ROOT / "docker/Dockerfile").read_text().replace("\\\n", "")
    script = re.search(r'python -c "(.*?)"', dockerfile)
    assert script is not None
    command = [sys.executable, "-c", script.group(1)]
    run = subprocess.run(
        command, cwd=ROOT, env={"EXTRAS": extras}, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


def test_the_image_carries_the_scale_extra_only_when_asked() -> None:
    assert SERVICES["api"]["build"]["args"] == {"EXTRAS": "${TANDEM_IMAGE_EXTRAS:-}"}
    assert re.search(r"^ARG EXTRAS=$", (ROOT / "docker/Dockerfile").read_text(), re.M)
    scale = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["scale"]
    plain = _dockerfile_requirements("")
    assert plain and not set(scale) & set(plain)
    assert _dockerfile_requirements("scale") == plain + scale
