"""``make scale``'s report: the scale tests' outcomes (pytest's JUnit XML) and, measured here, the search
latency of the Milvus backend (milvus-lite embedded, and as a ``milvus-lite server`` process reached over
gRPC) against an exact faiss index on the same vectors and queries, with the recall of Milvus' answers
against faiss' -> docs/results/scale.{md,json}. The measurements of ``make scale-measure``
(``var/scale/*.json``, ``tools.scale.measured``) are merged in; those not run again stay as they were.

    python -m tools.scale.report <junit.xml> <out stem>
    python -m tools.scale.report --measured <out stem>   # merge the measurements only, keep the tests
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tools.scale import measured as measured_sections
from tools.scale.common import MEASURED

ITEMS, DIM, QUERIES, K = 20_000, 64, 200, 100


def test_outcomes(junit: Path) -> list[dict[str, Any]]:
    root = ET.parse(junit).getroot()
    out = []
    for case in root.iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = kind
        out.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": round(float(case.get("time") or 0.0), 2),
            }
        )
    return out


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def lite_server(root: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """``milvus-lite server`` on a free port with its data under ``root``: yields its URI once it listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    binary = str(Path(sys.executable).with_name("milvus-lite"))
    command = [binary, "server", "--data-dir", str(root), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while not _listens(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milvus-lite server on port {port} did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def latency() -> dict[str, Any]:
    from models.index.builder import build_index
    from models.index.milvus import open_milvus_search

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(ITEMS + 2, DIM)).astype(np.float32)
    vectors[:2] = 0
    queries = rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    index = build_index(vectors, "flat")
    with tempfile.TemporaryDirectory() as scratch, lite_server(Path(scratch) / "server") as uri:
        started = time.perf_counter()
        milvus = open_milvus_search(
            str(Path(scratch) / "m.db"), "bench", vectors, index.version, timeout_s=5.0
        )
        publish_s = time.perf_counter() - started
        server = open_milvus_search(uri, "bench", vectors, index.version, timeout_s=5.0)
        times: dict[str, list[float]] = {"faiss": [], "milvus": [], "milvus_server": []}
        found: dict[str, list[float]] = {"milvus": [], "milvus_server": []}
        for query in queries:
            for name, search in (("faiss", index), ("milvus", milvus), ("milvus_server", server)):
                started = time.perf_counter()
                items, _ = search.search(query[None, :], K, [set()])
                times[name].append((time.perf_counter() - started) * 1e3)
                if name == "faiss":
                    truth = set(items[0].tolist())
                else:
                    found[name].append(len(truth & set(items[0].tolist())) / K)
    return {
        "items": ITEMS,
        "dim": DIM,
        "queries": QUERIES,
        "k": K,
        "publish_seconds": round(publish_s, 2),
        "p50_ms": {name: round(float(np.median(v)), 3) for name, v in times.items()},
        "p99_ms": {name: round(float(np.quantile(v, 0.99)), 3) for name, v in times.items()},
        "recall_vs_faiss": round(float(np.mean(found["milvus"])), 4),
        "server_recall_vs_faiss": round(float(np.mean(found["milvus_server"])), 4),
    }


def main(argv: list[str]) -> int:
    only_measured = argv[0] == "--measured"
    out = Path(argv[1])
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    if only_measured:
        tests, measured = previous["tests"], previous["milvus_latency"]
        date, command = previous["date"], previous["command"]
    else:
        tests, measured = test_outcomes(Path(argv[0])), latency()
        date, command = time.strftime("%Y-%m-%d"), "make scale"
    report = {"date": date, "tests": tests, "milvus_latency": measured, "command": command}
    report = measured_sections.merge(report, previous, MEASURED)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    passed = sum(t["outcome"] == "passed" for t in tests)
    lines = [
        "# Beyond one machine: `make scale`",
        "",
        f"{report['date']}, `make scale` (tests marked `scale`, then the latency below). Tests: {passed} of "
        f"{len(tests)} passed.",
        "",
        "| test | outcome | seconds |",
        "|---|---|---|",
        *(f"| `{t['test']}` | {t['outcome']} | {t['seconds']} |" for t in tests),
        "",
        f"Search latency, one query at a time, top {K} of {ITEMS:,} items (d {DIM}), {QUERIES} queries, "
        "exact inner product on all sides (milvus: milvus-lite embedded; milvus_server: a `milvus-lite "
        "server` process on this machine, over gRPC; both FLAT):",
        "",
        "| backend | p50 ms | p99 ms |",
        "|---|---|---|",
        *(
            f"| {name} | {measured['p50_ms'][name]} | {measured['p99_ms'][name]} |"
            for name in ("faiss", "milvus", "milvus_server")
        ),
        "",
        f"Milvus' answers hold {measured['recall_vs_faiss']:.1%} (embedded) and "
        f"{measured['server_recall_vs_faiss']:.1%} (server) of faiss' top {K}; publishing the embedded "
        f"collection took {measured['publish_seconds']} s. milvus-lite is a local reference for the code "
        "path, not a latency reference for a Milvus server.",
        "",
        "## Measured (`make scale-measure`)",
        *measured_sections.markdown(report),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if passed == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
