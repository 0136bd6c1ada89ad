"""The base images: the image's requirements follow pyproject.toml, and the Debian override builds from files
that exist with the local base image the check builds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from tests.docker.test_compose import SERVICES, STAGES
from tools.compose_check import images, stack

ROOT = Path(__file__).resolve().parents[3]


def test_image_requirements_follow_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = images.image_requirements()
    assert set(project["project"]["dependencies"]) <= set(requirements)
    assert set(project["build-system"]["requires"]) <= set(requirements)
    script = STAGES["venv"]
    assert "['build-system']['requires'], 'wheel', *p['project']['dependencies']" in script


def test_debian_override_builds_from_files_that_exist_and_leaves_grafana_out() -> None:
    services = yaml.safe_load((ROOT / "docker/compose.debian.yml").read_text())["services"]
    assert services["api"]["build"]["args"]["BASE_IMAGE"] == images.LOCAL_BASE
    assert services["api"]["build"]["args"]["WHEELS"] in {"index", "local"}
    assert f"deps-{services['api']['build']['args']['WHEELS']}" in STAGES
    for name in ("redis", "prometheus"):
        build = services[name]["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        text = dockerfile.read_text()
        assert re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1) == images.LOCAL_BASE  # type: ignore[union-attr]
        assert build["args"]["BASE_IMAGE"] == images.LOCAL_BASE
        assert services[name]["image"] != SERVICES[name]["image"], f"{name} would shadow the public image"
    assert services["grafana"] == {"profiles": ["grafana"]}
    # the check runs every service the default profile starts: not milvus (behind its profile in
    # docker-compose.yml), not grafana (behind one in the override)
    profiled = {name for name, service in SERVICES.items() if service.get("profiles")}
    assert profiled == {"milvus"}
    assert set(stack.SERVICES) == set(SERVICES) - profiled - {"grafana"}
