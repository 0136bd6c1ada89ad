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

from app.cli import build_parser
from app.core import metrics as app_metrics
from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
HTTP_ROUTES = {"/livez", "/readyz", "/metrics"}


def test_every_expected_service_has_a_healthcheck_and_healthy_dependencies() -> None:
    assert set(SERVICES) == {"api", "worker", "redis", "prometheus", "grafana"}
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_tandem_environment_variables_are_settings_fields() -> None:
    fields = set(Settings.model_fields)
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("TANDEM_"):
                assert variable.removeprefix("TANDEM_").lower() in fields, f"{name}: {variable} is no setting"
            else:
                assert variable in {"PROMETHEUS_MULTIPROC_DIR"} or variable.startswith("GF_"), variable


def test_tandem_commands_parse_with_the_real_cli() -> None:
    parser = build_parser()
    for name in ("api", "worker"):
        command = SERVICES[name]["command"]
        assert command[0] == "tandem"
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown command or flag
        assert callable(args.func)
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "docker/Dockerfile").read_text(), re.M)
    assert dockerfile_cmd is not None
    assert callable(parser.parse_args(json.loads(dockerfile_cmd.group(1))[1:]).func)


def _urls(test: list[str]) -> list[str]:
    return re.findall(r"https?://[^'\" ]+", " ".join(test))


def test_healthchecks_hit_real_routes_on_the_right_ports() -> None:
    api_urls = _urls(SERVICES["api"]["healthcheck"]["test"])
    assert api_urls == ["http://127.0.0.1:8000/readyz"]
    assert "8000:8000" in SERVICES["api"]["ports"] and "--port" in SERVICES["api"]["command"]
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
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(dep for dep in project["dependencies"] if dep.startswith("torch=="))
    install = next(line for line in dockerfile.splitlines() if "pip install torch" in line)
    words = shlex.split(install.removeprefix("RUN "))
    assert torch_pin in words and "https://download.pytorch.org/whl/cpu" in words
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied


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
