"""docker-compose.yml, the Dockerfile, Prometheus and Grafana files refer only to things that exist."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core import metrics as app_metrics
from app.core.config import Settings
from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "docker/Dockerfile").read_text()
HTTP_ROUTES = {"/livez", "/readyz", "/metrics"}
DEFAULT_SERVICES = {"api", "worker", "redis", "prometheus", "grafana"}


def test_every_expected_service_has_a_healthcheck_and_healthy_dependencies() -> None:
    assert set(SERVICES) == DEFAULT_SERVICES | {"milvus"}
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
            wanted: dict[str, Any] = {"condition": "service_healthy"}
            if "profiles" in SERVICES[dependency] and "profiles" not in service:  # default on optional
                wanted["required"] = False
            assert condition == wanted, f"{name} -> {dependency}"


def test_tandem_environment_variables_are_settings_fields() -> None:
    fields = set(Settings.model_fields)
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("TANDEM_"):
                assert variable.removeprefix("TANDEM_").lower() in fields, f"{name}: {variable} is no setting"
            else:
                assert (
                    variable in {"PROMETHEUS_MULTIPROC_DIR"} or variable.startswith("GF_") or name == "milvus"
                ), variable


def test_tandem_commands_parse_with_the_real_cli() -> None:
    parser = build_parser()
    for name in ("api", "worker"):
        command = SERVICES[name]["command"]
        assert command[0] == "tandem"
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown command or flag
        assert callable(args.func)
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert dockerfile_cmd is not None
    assert callable(parser.parse_args(json.loads(dockerfile_cmd.group(1))[1:]).func)


def _urls(test: list[str]) -> list[str]:
    return re.findall(r"https?://[^'\" ]+", " ".join(test))


def test_healthchecks_hit_real_routes_on_the_right_ports() -> None:
    api_urls = _urls(SERVICES["api"]["healthcheck"]["test"])
    assert api_urls == ["http://127.0.0.1:8000/readyz"]
    assert (
        "${TANDEM_API_PORT:-8000}:8000" in SERVICES["api"]["ports"] and "--port" in SERVICES["api"]["command"]
    )
    assert SERVICES["api"]["command"][SERVICES["api"]["command"].index("--port") + 1] == "8000"
    worker_urls = _urls(SERVICES["worker"]["healthcheck"]["test"])
    port = SERVICES["worker"]["command"][SERVICES["worker"]["command"].index("--metrics-port") + 1]
    assert worker_urls == [f"http://127.0.0.1:{port}/metrics"]
    for url in api_urls + worker_urls:
        assert re.sub(r"^https?://[^/]+", "", url) in HTTP_ROUTES


def test_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
    assert (ROOT / SERVICES["api"]["build"]["dockerfile"]).is_file()


def test_dockerfile_matches_the_project_pins() -> None:
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M), (
        "default base: the public image"
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(dep for dep in project["dependencies"] if dep.startswith("torch=="))
    install = next(line for line in DOCKERFILE.splitlines() if "pip install torch" in line)
    words = shlex.split(install.removeprefix("RUN "))
    assert torch_pin in words and "https://download.pytorch.org/whl/cpu" in words


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its text (from its FROM line to the next one)."""
    parts = re.split(r"^(?=FROM )", dockerfile, flags=re.M)
    return {
        re.match(r"FROM \S+(?: AS (\S+))?", part).group(1) or f"stage{i}": part  # type: ignore[union-attr]
        for i, part in enumerate(parts)
        if part.startswith("FROM ")
    }


STAGES = _stages(DOCKERFILE)


def test_dockerfile_stages_chain_and_the_wheel_source_selects_a_real_stage() -> None:
    known = {"${BASE_IMAGE}"}
    for name, text in STAGES.items():
        parent = text.split()[1]
        assert parent in known or parent == "deps-${WHEELS}", f"{name} starts from unknown {parent}"
        known.add(name)
        for source_stage in re.findall(r"from=(\S+?),", text):
            assert source_stage in known, f"{name} mounts from unknown stage {source_stage}"
    choices = re.search(r"^#\s+WHEELS\s+index:.*\n(?:#.*\n)*?#\s+local:", DOCKERFILE, re.M)
    assert choices, "the WHEELS values are documented at the top"
    assert re.search(r"^ARG WHEELS=index$", DOCKERFILE, re.M)
    assert {"deps-index", "deps-local"} <= set(STAGES)


def test_dependencies_are_installed_before_the_sources_are_copied() -> None:
    """A change to app/ or models/ must not invalidate the layer with torch in it."""
    for name in ("venv", "deps-index", "deps-local"):
        copied = re.findall(r"^COPY (.+)$", STAGES[name], re.M)
        assert all(line.split()[:-1] == ["pyproject.toml"] for line in copied), f"{name}: {copied}"
        assert "pip install" in STAGES[name] or name == "venv"
    assert re.search(r"^COPY app ", STAGES["wheel"], re.M)
    runtime = list(STAGES.values())[-1]
    assert "COPY --from=deps /opt/venv /opt/venv" in runtime
    assert "COPY app" not in runtime and "COPY models" not in runtime


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    runtime = list(STAGES.values())[-1]
    user = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(rf"useradd .*{user[-1]}\b", runtime)
    healthcheck = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", runtime, re.M)
    assert healthcheck is not None
    urls = _urls(json.loads(healthcheck.group(1)))
    assert [re.sub(r"^https?://[^/]+", "", url) for url in urls] == ["/livez"]


def _ignored_by_docker(ignore_file: Path, path: str) -> bool:
    """The outcome of a .dockerignore for one path (last matching pattern wins; only the forms used here)."""
    ignored = False
    for line in ignore_file.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if re.fullmatch(rf"{regex}(?:/.*)?", path):
            ignored = not negate
    return ignored


def test_everything_the_dockerfile_reads_is_in_the_build_context() -> None:
    ignore = ROOT / "docker/Dockerfile.dockerignore"
    copied = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.M)
        for source in line.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored_by_docker(ignore, source), f"{source} is not sent to the build"
    mounted = re.findall(r"--mount=type=bind,source=(\S+?),", DOCKERFILE)
    assert mounted == ["var/wheelhouse"]
    assert not _ignored_by_docker(ignore, "var/wheelhouse/torch.whl")
    for private in (".venv/bin/python", "var/bundles/x/manifest.json", "tests/conftest.py", ".git/HEAD"):
        assert _ignored_by_docker(ignore, private), private
    assert "/var/" in (ROOT / ".gitignore").read_text().splitlines(), "the wheelhouse stays out of git"


def test_prometheus_scrapes_the_services_that_serve_metrics() -> None:
    config = yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())
    targets = {
        target: job["metrics_path"]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    worker_port = SERVICES["worker"]["command"][SERVICES["worker"]["command"].index("--metrics-port") + 1]
    assert targets == {"api:8000": "/metrics", f"worker:{worker_port}": "/metrics"}


def _metric_names() -> set[str]:
    names = set()
    for value in vars(app_metrics).values():
        name = getattr(value, "_name", None)
        kind = getattr(value, "_type", None)
        if isinstance(name, str) and kind is not None:
            names.add(name + ("_total" if kind == "counter" else ""))
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "docker/grafana/dashboards").glob("*.json")), ids=str)
def test_dashboard_queries_use_existing_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    known = _metric_names()
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\btandem_[a-z_]+", target["expr"])
    }
    assert used and used <= known, sorted(used - known)
    datasource = yaml.safe_load((ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090" and "prometheus" in SERVICES


# --- the overrides make compose-check (tools/compose_check) runs the stack with -------------------

OVERRIDES = {
    name: yaml.safe_load((ROOT / "docker" / name).read_text())
    for name in ("compose.check.yml", "compose.debian.yml")
}


def test_overrides_only_change_services_of_the_shipped_file() -> None:
    for name, override in OVERRIDES.items():
        assert set(override["services"]) <= set(SERVICES), name
        assert set(override) <= {"services"} | {key for key in override if key.startswith("x-")}, name
        for service in override["services"].values():
            for variable in service.get("environment", {}):
                assert variable.removeprefix("TANDEM_").lower() in Settings.model_fields, variable


def test_the_check_override_mounts_the_bundle_it_points_the_settings_at() -> None:
    for name in ("api", "worker"):
        service = OVERRIDES["compose.check.yml"]["services"][name]
        bundle_path = service["environment"]["TANDEM_BUNDLE_PATH"]
        mounts = [volume.rsplit(":", 2) for volume in service["volumes"]]
        assert [target for _, target, mode in mounts if mode == "ro"] == [bundle_path]
        assert mounts[0][0].startswith("${TANDEM_BUNDLE_HOST_DIR:?")


def test_debian_images_run_the_shipped_commands_like_the_official_ones() -> None:
    prometheus = (ROOT / "docker/debian/prometheus.Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["/usr/bin/prometheus"\]$', prometheus, re.M)
    assert all(arg.startswith("--") for arg in SERVICES["prometheus"]["command"]), "arguments only"
    assert "wget" in prometheus and SERVICES["prometheus"]["healthcheck"]["test"][1] == "wget"
    config_mount = next(v for v in SERVICES["prometheus"]["volumes"] if "prometheus.yml" in v)
    assert f"--config.file={config_mount.split(':')[1]}" in SERVICES["prometheus"]["command"]
    redis = (ROOT / "docker/debian/redis.Dockerfile").read_text()
    assert SERVICES["redis"]["command"][0] == "redis-server" and "/usr/local/bin/redis-server" in redis
    assert "redis-server" in redis and "--protected-mode no" in redis
    data_volume = next(v for v in SERVICES["redis"]["volumes"] if v.startswith("redis-data:"))
    assert re.search(rf"^WORKDIR {data_volume.split(':')[1]}$", redis, re.M)
