"""What the behaviour step asks of the stack exists: the routes it calls, the metrics and labels it reads,
the Prometheus jobs it expects."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.api import routes_events, routes_items, routes_recommend
from app.core import metrics as app_metrics
from app.services.events import ACTION_NAMES
from tests.docker.test_compose import SERVICES, _metric_names
from tools.compose_check import behaviour

ROOT = Path(__file__).resolve().parents[3]


def test_compose_check_talks_to_real_routes_metrics_and_targets() -> None:
    source = Path(behaviour.__file__).read_text()
    routes = {
        route.path
        for router in (routes_recommend, routes_events, routes_items)
        for route in router.router.routes
    }  # type: ignore[attr-defined]
    for used in re.findall(r'\{api\}(/v1/[^"?]+)', source):
        assert re.sub(r"\{urllib\.parse\.quote\(seed_item\)\}", "{item_id}", used) in routes, used
    for metric in re.findall(r'"(tandem_[a-z_]+)"', source) + re.findall(r"\b(tandem_[a-z_]+)\{", source):
        assert metric in _metric_names(), metric
    for labels in re.findall(r"tandem_requests_total\{([^}]*)\}", source):
        names = {pair.split("=")[0] for pair in labels.split(",")}
        assert names == {"job", *app_metrics.REQUESTS._labelnames}, names
    worker_port = SERVICES["worker"]["command"][SERVICES["worker"]["command"].index("--metrics-port") + 1]
    assert f'metrics_of("worker", {worker_port})' in source
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())["scrape_configs"]
    }
    assert (
        set(re.findall(r'"(tandem-[a-z]+)"', source)) | set(re.findall(r'job="(tandem-[a-z]+)"', source))
        <= jobs
    )
    assert '"action": "click"' in source and "click" in ACTION_NAMES


def test_metric_total_sums_every_label_set_of_one_metric_only() -> None:
    text = (
        "# TYPE tandem_worker_vectors_written_total counter\n"
        'tandem_worker_vectors_written_total{model="a"} 3.0\n'
        'tandem_worker_vectors_written_total{model="b"} 4.0\n'
        "tandem_worker_vectors_written_created 1.7e9\n"
        "tandem_worker_entries_total 9.0\n"
    )
    assert behaviour.metric_total(text, "tandem_worker_vectors_written_total") == 7.0
    assert behaviour.metric_total(text, "tandem_worker_entries_total") == 9.0
    assert behaviour.metric_total(text, "tandem_missing_total") == 0.0
