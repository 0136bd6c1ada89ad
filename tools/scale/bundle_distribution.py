"""``bundle_distribution``: a packed bundle reaching 2 API replicas that share no disk.

Two tiny bundles (v1, v2: same data, other weights); v2 packed (``tandem bundle pack``) and served by a
local HTTP server (python's http.server in a thread). Two replicas (``tandem serve --workers 1``), each
with its own ``TANDEM_VAR_DIR``, start on v1 and share a Redis (a spare db, a key prefix of their own,
deleted after). Then, through replica 1:

- a reload naming the archive's URL with a wrong sha256, and one naming a tampered copy of the archive (50
  bytes changed) with the true sha256: each must answer 422 while both replicas keep serving v1
  (``tampered_refused``);
- a reload naming the URL and the true sha256: ``converged`` when the answer says so and both replicas'
  ``/readyz`` and ``/v1/recommend`` report v2's model version, fetched into their own var dirs.

    python -m tools.scale.bundle_distribution [--redis-url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from models.bundle.load import Bundle
from models.bundle.pack import pack_bundle
from tools.scale.common import ADMIN_KEY, Api, serve_directory, small_bundles, write_measurement

NAME = "bundle_distribution"
REPLICAS = 2


def tamper(archive: Path, out: Path) -> Path:
    """A copy of ``archive`` with 50 bytes in its middle changed (same size)."""
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 50] = bytes(b ^ 0xFF for b in data[middle : middle + 50])
    out.write_bytes(bytes(data))
    return out


def reload(api: Api, body: dict[str, str]) -> httpx.Response:
    headers = {"X-Admin-Key": ADMIN_KEY}
    return httpx.post(f"{api.url}/v1/admin/reload", json=body, headers=headers, timeout=120)


def versions(replicas: list[Api]) -> dict[str, dict[str, str]]:
    """Each replica's model version as /readyz and a recommend answer report it."""
    out = {}
    for api in replicas:
        answer = httpx.post(f"{api.url}/v1/recommend", json={"user_id": "u1"}, timeout=10).json()
        out[api.name] = {"readyz": api.model_version(), "recommend": str(answer["meta"]["model_version"])}
    return out


def measure(redis_url: str, root: Path) -> dict[str, Any]:
    v1, v2 = small_bundles(root / "bundles")
    old, new = Bundle.load(v1).model_version, Bundle.load(v2).model_version
    shared = root / "http"
    shared.mkdir()
    archive, digest = pack_bundle(v2, shared / "v2.tar.gz")
    tamper(archive, shared / "v2-tampered.tar.gz")
    prefix = f"scale-bd-{int(time.time())}"
    replicas = [
        Api(
            f"replica-{n}",
            root / f"replica-{n}",
            {
                "TANDEM_BUNDLE_PATH": str(v1),
                "TANDEM_REDIS_URL": redis_url,
                "TANDEM_KEY_PREFIX": prefix,
                "TANDEM_VAR_DIR": str(root / f"replica-{n}" / "var"),
                "TANDEM_BUNDLE_SYNC_INTERVAL_S": "0.5",
            },
        )
        for n in range(REPLICAS)
    ]
    try:
        with serve_directory(shared) as base:
            for api in replicas:
                api.start()
            refused: dict[str, Any] = {}
            for case, body in {
                "wrong sha256": {"bundle_url": f"{base}/v2.tar.gz", "sha256": "0" * 64},
                "tampered archive": {"bundle_url": f"{base}/v2-tampered.tar.gz", "sha256": digest},
            }.items():
                answer = reload(replicas[0], body)
                time.sleep(2)  # several sync intervals: a follower would have acted on a bad record by now
                refused[case] = {
                    "status": answer.status_code,
                    "code": answer.json().get("error", {}).get("code"),
                    "versions_after": versions(replicas),
                }
            answer = reload(replicas[0], {"bundle_url": f"{base}/v2.tar.gz", "sha256": digest})
            body = answer.json()
            after = versions(replicas)
            fetched = {
                api.name: sorted(p.name for p in (api.workdir / "var" / "fetched").glob("*") if p.is_dir())
                for api in replicas
            }
    finally:
        for api in replicas:
            api.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    served_old = all(
        set(v.values()) == {old} for case in refused.values() for v in case["versions_after"].values()
    )
    tampered_refused = served_old and all(
        case["status"] == 422 and case["code"] == "reload_failed" for case in refused.values()
    )
    converged = (
        answer.status_code == 200
        and body.get("converged") is True
        and all(set(v.values()) == {new} for v in after.values())
        and all(len(names) == 1 for names in fetched.values())
    )
    return {
        "replicas": REPLICAS,
        "converged": converged,
        "tampered_refused": tampered_refused,
        "old_model_version": old,
        "new_model_version": new,
        "archive_bytes": archive.stat().st_size,
        "refused": refused,
        "reload": {
            "status": answer.status_code,
            "converged": body.get("converged"),
            "processes": body.get("processes"),
        },
        "versions_after_reload": after,
        "fetched_into_own_var_dir": fetched,
        "setup": "tiny bundles (60 users, 200 items, untrained dim-16 encoder); one shared Redis (spare db, "
        "own key prefix); archive served by python http.server",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a spare db of a Redis")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="scale-bundles-"))
    try:
        result = measure(args.redis_url, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_measurement(NAME, result, " ".join(["python -m tools.scale.bundle_distribution", *argv]))
    return 0 if result["converged"] and result["tampered_refused"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
