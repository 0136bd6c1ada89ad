"""``make compose-check``: build the image, run the shipped docker-compose.yml, prove it serves, tear down.

Steps (each printed with its duration):
  1. engine     a running Docker engine: started here (and stopped at the end) when only installed;
                Debian's docker.io/docker-compose installed with apt when missing and this runs as root.
  2. images     the usual base image (python:3.11-slim) when it can be pulled; otherwise
                tandem-base:bookworm from Debian packages (debootstrap + docker import), var/wheelhouse
                from the host's pip, and docker/compose.debian.yml (redis/prometheus from Debian packages,
                Grafana left out).
  3. bundle     the default bundle built on the host (`tandem bundle build --default`, reused when
                current) and mounted read-only through docker/compose.check.yml.
  4. build, up  `compose build`, then `compose up -d` until every service's healthcheck passes.
  5. behaviour  recommendations and events through the API port; the worker consumes the events and
                the user's next answer is served from the vector it wrote; Prometheus has scraped the
                API's request counters.
  6. teardown   `compose down --volumes`; no container, network or volume of the project may remain.

Exit status 0 only when everything held. Built images stay (the next run's build cache).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "compose-check"
WHEELHOUSE = ROOT / "var" / "wheelhouse"
PUBLIC_BASE = "python:3.11-slim"
LOCAL_BASE = "tandem-base:bookworm"
DEBIAN_MIRROR = os.environ.get("TANDEM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Under docker/: the prebuilt-bundle override always; the Debian-packages one without registry access.
OVERRIDES = ("compose.check.yml", "compose.debian.yml")
SERVICES = ("redis", "api", "worker", "prometheus")  # grafana only where its image can be pulled
LOG_TAIL = 40
IMAGE_LABEL = "org.opencontainers.image.title=tandem"  # docker/Dockerfile; prunes old builds


class CheckFailed(Exception):
    """A step did not hold; the message says which and why (one line)."""


def say(message: str) -> None:
    print(f"compose-check: {message}", flush=True)


def run(
    command: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    stdin: Any = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; a failure with ``check`` raises CheckFailed with its tail."""
    try:
        result = subprocess.run(
            [str(part) for part in command],
            cwd=ROOT,
            env=env,
            text=True,
            capture_output=capture,
            timeout=timeout,
            stdin=stdin,
        )
    except FileNotFoundError as error:
        raise CheckFailed(f"{command[0]}: not installed") from error
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{' '.join(map(str, command[:3]))}: no answer in {timeout:.0f}s") from error
    if check and result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).strip().splitlines()[-15:])
        raise CheckFailed(f"`{' '.join(map(str, command[:4]))} ...` failed ({result.returncode}):\n{tail}")
    return result


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    say(f"{name} ...")
    start = time.monotonic()
    yield
    timings[name] = round(time.monotonic() - start, 1)
    say(f"{name}: {timings[name]:.1f}s")


# --- engine ------------------------------------------------------------------------------------------


def _path_binaries(name: str) -> list[str]:
    found: list[str] = []
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/sbin"]:
        candidate = Path(directory) / name
        real = str(candidate.resolve()) if candidate.exists() else ""
        if real and os.access(candidate, os.X_OK) and real not in {str(Path(f).resolve()) for f in found}:
            found.append(str(candidate))
    return found


def _apt_install(packages: list[str]) -> bool:
    """Install Debian packages when running as root with apt; False when that is not possible here."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if run(quiet, check=False, env=env).returncode != 0:
        run(["apt-get", "update", "-q"], check=False, env=env)
        return run(quiet, check=False, env=env).returncode == 0
    return True


class Engine:
    """The Docker CLI used for builds (BuildKit-capable), the compose command, and a dockerd we started."""

    def __init__(self) -> None:
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.bin_dir = Path(tempfile.mkdtemp(prefix="tandem-compose-check-"))
        self.docker = "docker"
        self.compose: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for docker/compose: the BuildKit-capable CLI first on PATH."""
        return {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DOCKER_BUILDKIT": "1",
            "COMPOSE_DOCKER_CLI_BUILD": "1",
            **extra,
        }

    def start(self) -> None:
        nothing = not _path_binaries("docker") and not _path_binaries("dockerd")
        if nothing and not _apt_install(["docker.io", "docker-compose"]):
            raise CheckFailed(
                "no Docker engine here, and it cannot be installed (needs root and apt-get for docker.io)"
            )
        clients = _path_binaries("docker")
        if not clients and not _apt_install(["docker.io"]):
            raise CheckFailed("no docker client here, and it cannot be installed (docker.io)")
        clients = clients or _path_binaries("docker")
        if run([clients[0], "info"], check=False, timeout=30).returncode != 0:
            self._start_dockerd(clients[0])
        self.docker = self._buildkit_client(clients)
        (self.bin_dir / "docker").symlink_to(self.docker)
        self.compose = self._compose_command()

    def _start_dockerd(self, client: str) -> None:
        daemons = _path_binaries("dockerd")
        if not daemons and not _apt_install(["docker.io"]):
            raise CheckFailed("no Docker engine running; dockerd is not installed and cannot be installed")
        daemons = daemons or _path_binaries("dockerd")
        if os.geteuid() != 0:
            raise CheckFailed("no Docker engine running, and starting dockerd needs root")
        WORK.mkdir(parents=True, exist_ok=True)
        log = (WORK / "dockerd.log").open("wb")
        say(f"starting {daemons[0]} (log: {WORK / 'dockerd.log'})")
        self.dockerd = subprocess.Popen(
            ["nice", "-n", "10", daemons[0], "--pidfile", str(WORK / "dockerd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.dockerd.poll() is not None:
                tail = (WORK / "dockerd.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise CheckFailed("dockerd exited at start:\n" + "\n".join(tail))
            if run([client, "info"], check=False, timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise CheckFailed("dockerd did not answer within 60 s")

    def _buildkit_client(self, clients: list[str]) -> str:
        """A client that builds with BuildKit: one with buildx, or a pre-23 client (BuildKit built in)."""
        for client in clients:
            if run([client, "buildx", "version"], check=False).returncode == 0:
                return client
        for client in clients:
            version = run([client, "version", "--format", "{{.Client.Version}}"], check=False).stdout
            major = re.match(r"\s*(\d+)\.", version or "")
            if major and int(major.group(1)) < 23:
                return client
        raise CheckFailed("no docker client here builds with BuildKit (install docker-buildx, or docker.io)")

    def _compose_command(self) -> list[str]:
        if run([self.docker, "compose", "version"], check=False).returncode == 0:
            return [self.docker, "compose"]
        if shutil.which("docker-compose") or _apt_install(["docker-compose"]):
            return ["docker-compose"]
        raise CheckFailed("neither `docker compose` nor docker-compose is available, nor installable")

    def stop(self) -> None:
        shutil.rmtree(self.bin_dir, ignore_errors=True)
        if self.dockerd is None:
            return
        say("stopping the dockerd this check started")
        self.dockerd.terminate()
        try:
            self.dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.dockerd.kill()
            self.dockerd.wait()


# --- images ------------------------------------------------------------------------------------------


def base_image_pullable(engine: Engine) -> bool:
    if run([engine.docker, "image", "inspect", PUBLIC_BASE], check=False).returncode == 0:
        return True
    return run([engine.docker, "pull", "-q", PUBLIC_BASE], check=False, timeout=300).returncode == 0


def build_local_base(engine: Engine) -> None:
    """tandem-base:bookworm: Debian 12 minbase with Python 3.11, its venv module and CA certificates."""
    if run([engine.docker, "image", "inspect", LOCAL_BASE], check=False).returncode == 0:
        say(f"{LOCAL_BASE} present (docker rmi it to rebuild)")
        return
    if shutil.which("debootstrap") is None and not _apt_install(["debootstrap"]):
        raise CheckFailed(f"{PUBLIC_BASE} cannot be pulled and debootstrap is not installable here")
    rootfs = WORK / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    include = "--include=python3,python3-venv,ca-certificates"
    command: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        include,
        "bookworm",
        rootfs,
        DEBIAN_MIRROR,
    ]
    say(f"{PUBLIC_BASE} cannot be pulled: building {LOCAL_BASE} with debootstrap from {DEBIAN_MIRROR}")
    run(command, timeout=1200)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run([engine.docker, "import", "-c", 'CMD ["/bin/bash"]', "-", LOCAL_BASE], stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


def image_requirements() -> list[str]:
    """What the image's dependency stage installs: build requirements, wheel, project dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*project["build-system"]["requires"], "wheel", *project["project"]["dependencies"]]


def make_wheelhouse(engine: Engine) -> None:
    """var/wheelhouse for WHEELS=local: the host's pip first (its torch is the CPU wheel), then pip in the
    base image adds what only that interpreter needs (markers on its exact Python version)."""
    requirements = "\n".join(image_requirements()) + "\n"
    # Only wheels go into var/wheelhouse: the image build hashes that directory, so anything else
    # there (stamps, lists) would throw away the cached dependency layers whenever it changed.
    pip_dir = WORK / "pip"
    stamp = pip_dir / "stamp"
    base_id = run([engine.docker, "image", "inspect", "-f", "{{.Id}}", LOCAL_BASE]).stdout.strip()
    if stamp.is_file() and stamp.read_text() == requirements + base_id:
        say("var/wheelhouse is current")
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    pip_dir.mkdir(parents=True, exist_ok=True)
    (pip_dir / "requirements.txt").write_text(requirements)
    pip = [sys.executable, "-m", "pip", "download", "-q"]
    run([*pip, "-d", WHEELHOUSE, "-r", pip_dir / "requirements.txt"])
    pins = sorted(
        "{}=={}".format(*wheel.name.split("-")[:2]) for wheel in WHEELHOUSE.glob("*.whl")
    )  # keep every wheel the host chose (the CPU torch above all)
    (pip_dir / "constraints.txt").write_text("\n".join(pins) + "\n")
    mounts = ["-v", f"{WHEELHOUSE}:/wheels", "-v", f"{pip_dir}:/pip:ro"]
    if HOST_CA_BUNDLE.is_file():  # a container trusts only what it is given
        mounts += ["-v", f"{HOST_CA_BUNDLE}:/host-ca.crt:ro", "-e", "PIP_CERT=/host-ca.crt"]
    script = (
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip download -q --disable-pip-version-check "
        "-d /wheels --find-links /wheels -c /pip/constraints.txt -r /pip/requirements.txt"
    )
    run([engine.docker, "run", "--rm", *mounts, LOCAL_BASE, "sh", "-c", script], timeout=900)
    stamp.write_text(requirements + base_id)


def default_bundle(data_dir: Path) -> Path:
    """The default bundle on the host (built on first use, a few minutes; reused after)."""
    command = [sys.executable, "-m", "cli.main", "bundle", "build", "--default"]
    command += ["--data-dir", str(data_dir), "--root", str(ROOT / "var")]
    result = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE)  # progress on stderr
    if result.returncode != 0:
        raise CheckFailed(f"the default bundle could not be built ({result.returncode}); see above")
    return Path(bundle_summary(result.stdout)["bundle"]).resolve()


def bundle_summary(stdout: str) -> dict[str, Any]:
    """The last JSON summary `tandem bundle build` prints (indented: it opens with a lone "{" line and
    closes with a lone "}"); lines after it (the "serve it: ..." hint) are not part of it."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    try:
        stop = lines.index("}", starts[-1])
        return dict(json.loads("\n".join(lines[starts[-1] : stop + 1])))
    except (IndexError, ValueError) as error:  # no "{" line, no closing "}", or not JSON
        raise CheckFailed(
            f"no bundle summary in the output of tandem bundle build: {stdout[-300:]!r}"
        ) from error


def staged_bundle(bundle: Path) -> Path:
    """A copy of the bundle the containers' non-root user can read (bundle directories are made private
    on the host), under var/compose-check/bundle; the original stays as it is."""
    if not (bundle / "manifest.json").is_file():
        raise CheckFailed(f"{bundle}: not a bundle (no manifest.json)")
    staged = WORK / "bundle"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(bundle, staged)
    for path in [staged, *staged.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return staged


# --- the stack ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stack:
    """docker-compose.yml plus overrides, under its own project name."""

    def __init__(self, engine: Engine, files: list[Path], project: str, env: dict[str, str]) -> None:
        self.engine = engine
        self.project = project
        self.base = [*engine.compose, "-p", project]
        for file in files:
            self.base += ["-f", str(file)]
        self.env = engine.env(**env)

    def compose(self, *args: str, check: bool = True, timeout: float | None = None) -> str:
        return run([*self.base, *args], check=check, env=self.env, timeout=timeout).stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def state(self, service: str) -> str:
        """'running healthy', 'running starting', 'exited', ... or 'absent'."""
        container = self.container(service)
        if not container:
            return "absent"
        template = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        result = run([self.engine.docker, "inspect", "-f", template, container], check=False)
        return result.stdout.strip() or "absent"

    def up_until_healthy(self, timeout_s: float) -> None:
        """`up -d` (compose waits for healthy dependencies itself) and wait for every service healthy."""
        up = subprocess.Popen(
            [*self.base, "up", "-d", "--no-build"],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if up.poll() is not None and up.returncode != 0:
                output = (up.stdout.read() if up.stdout else "").strip().splitlines()[-10:]
                raise CheckFailed("compose up failed:\n" + "\n".join(output))
            states = {service: self.state(service) for service in SERVICES}
            if up.poll() == 0 and all(state == "running healthy" for state in states.values()):
                return
            broken = [
                s
                for s, state in states.items()
                if state.startswith(("exited", "dead")) or state.endswith("unhealthy")
            ]
            if broken:
                raise CheckFailed(f"not healthy: {', '.join(f'{s} ({states[s]})' for s in broken)}")
            time.sleep(2)
        up.kill()
        raise CheckFailed(f"not healthy after {timeout_s:.0f}s: {states}")

    def print_logs(self) -> None:
        for service in SERVICES:
            say(f"last {LOG_TAIL} log lines of {service}:")
            print(
                self.compose("logs", "--no-color", "--tail", str(LOG_TAIL), service, check=False), flush=True
            )

    def metrics_of(self, service: str, port: int) -> str:
        """The Prometheus text a service serves on ``port`` inside its container."""
        code = (
            f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
        )
        return self.compose("exec", "-T", service, "python", "-c", code, timeout=60)

    def down(self) -> list[str]:
        """Tear down; what is left of the project (containers, networks, volumes) — empty when clean."""
        self.compose("--profile", "grafana", "down", "--volumes", "--remove-orphans", "-t", "10", check=False)
        label = f"label=com.docker.compose.project={self.project}"
        left = []
        for kind in ("container", "network", "volume"):
            listing = [self.engine.docker, kind, "ls", "-q", "--filter", label]
            if kind == "container":
                listing.insert(3, "-a")
            left += [f"{kind} {name}" for name in run(listing, check=False).stdout.split()]
        return left


# --- behaviour ---------------------------------------------------------------------------------------


def http_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"{url}: HTTP {error.code}: {error.read()[:300]!r}") from error
    except urllib.error.URLError as error:
        raise CheckFailed(f"{url}: {error.reason}") from error


def metric_total(text: str, name: str) -> float:
    """Sum of a metric's samples over all label sets in Prometheus text format."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def check_behaviour(stack: Stack, api: str, prometheus: str, wait_s: float) -> dict[str, Any]:
    """Recommend, send events, see the worker's vector serve the next answer, find the API in Prometheus."""
    user = f"compose-check-{uuid.uuid4().hex[:12]}"
    before = http_json(f"{api}/v1/recommend", {"user_id": user, "k": 10})
    if not before["items"] or before["meta"]["served_by"] != "popular":
        raise CheckFailed(f"a new user should get popular items: {before}")
    seed_item = before["items"][0]["item_id"]
    similar = http_json(f"{api}/v1/items/{urllib.parse.quote(seed_item)}/similar?k=5")
    liked = [seed_item, *[item["item_id"] for item in similar["items"]][:4]]
    written_before = metric_total(stack.metrics_of("worker", 9101), "tandem_worker_vectors_written_total")
    now = int(time.time())
    events = [
        {"user_id": user, "item_id": item, "action": "click", "timestamp": now - len(liked) + i}
        for i, item in enumerate(liked)
    ]
    accepted = http_json(f"{api}/v1/events", {"events": events})
    if accepted.get("accepted") != len(events):
        raise CheckFailed(f"events not accepted: {accepted}")
    # No request for this user until the worker has written vectors: a cache hit afterwards can only
    # come from the worker (the API writes a vector back only when it answers a request).
    deadline = time.monotonic() + wait_s
    written = written_before
    while written <= written_before:
        if time.monotonic() > deadline:
            raise CheckFailed(f"the worker wrote no user vector within {wait_s:.0f}s of the events")
        time.sleep(1)
        written = metric_total(stack.metrics_of("worker", 9101), "tandem_worker_vectors_written_total")
    after = http_json(f"{api}/v1/recommend", {"user_id": user, "k": 10})
    if after["meta"]["served_by"] != "cache":
        raise CheckFailed(f"after the worker ran, served_by is {after['meta']['served_by']!r}, not 'cache'")
    old = [item["item_id"] for item in before["items"]]
    new = [item["item_id"] for item in after["items"]]
    if new == old or set(new) & set(liked):
        raise CheckFailed(f"the answer did not follow the events: before {old}, after {new}, liked {liked}")

    # The answer just served from the worker's vector, as Prometheus scraped it from the API.
    series = 'tandem_requests_total{job="tandem-api",path="/v1/recommend",served_by="cache",status="200"}'
    query = urllib.parse.urlencode({"query": f"sum({series})"})
    deadline = time.monotonic() + wait_s
    scraped = 0.0
    while scraped < 1:
        if time.monotonic() > deadline:
            raise CheckFailed(f"Prometheus has not scraped {series} within {wait_s:.0f}s")
        time.sleep(2)
        result = http_json(f"{prometheus}/api/v1/query?{query}")["data"]["result"]
        scraped = float(result[0]["value"][1]) if result else 0.0
    targets = http_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    health = {target["labels"]["job"]: target["health"] for target in targets}
    if health != {"tandem-api": "up", "tandem-worker": "up"}:
        raise CheckFailed(f"Prometheus targets: {health}")
    return {
        "before": {"served_by": before["meta"]["served_by"], "items": old},
        "events": liked,
        "after": {"served_by": after["meta"]["served_by"], "items": new},
        "worker_vectors_written": written - written_before,
        "prometheus_cache_answers": scraped,
        "prometheus_targets": health,
    }


# --- main --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_data = Path(os.environ.get("TANDEM_DATA_HOST_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data, help="mounted read-only at /data")
    parser.add_argument("--bundle", type=Path, default=None, help="a bundle directory (default: built here)")
    parser.add_argument("--healthy-timeout", type=float, default=300.0, help="seconds for up -> healthy")
    parser.add_argument("--wait", type=float, default=90.0, help="seconds for the worker and Prometheus")
    parser.add_argument("--project", default="tandemcheck", help="compose project name")
    return parser.parse_args(argv)


def check(
    args: argparse.Namespace, engine: Engine, timings: dict[str, float], report: dict[str, Any]
) -> None:
    with step("engine", timings):
        engine.start()
    say(f"docker: {engine.docker}, compose: {' '.join(engine.compose)}")
    files = [ROOT / "docker-compose.yml", ROOT / "docker" / OVERRIDES[0]]
    with step("base images", timings):
        if base_image_pullable(engine):
            say(f"{PUBLIC_BASE} is available: the shipped images are used")
        else:
            build_local_base(engine)
            make_wheelhouse(engine)
            files.append(ROOT / "docker" / OVERRIDES[1])
    with step("bundle", timings):
        bundle = args.bundle.resolve() if args.bundle else default_bundle(args.data_dir.resolve())
        bundle = staged_bundle(bundle)
    say(f"bundle: {bundle}")
    api_port, prometheus_port = free_port(), free_port()
    stack = Stack(
        engine,
        files,
        args.project,
        {
            "TANDEM_BUNDLE_HOST_DIR": str(bundle),
            "TANDEM_DATA_HOST_DIR": str(args.data_dir.resolve()),
            "TANDEM_API_PORT": str(api_port),
            "TANDEM_PROMETHEUS_PORT": str(prometheus_port),
        },
    )
    report["compose_files"] = [str(file.relative_to(ROOT)) for file in files]
    stack.down()  # what an interrupted earlier run may have left
    try:
        with step("build", timings):
            stack.compose("build", timeout=3600)
        run([engine.docker, "image", "prune", "-f", "--filter", f"label={IMAGE_LABEL}"])
        size = run([engine.docker, "image", "inspect", "-f", "{{.Size}}", "tandem:latest"]).stdout
        report["image_mb"] = round(int(size) / 1e6)
        say(f"tandem:latest is {report['image_mb']} MB")
        try:
            with step("up to healthy", timings):
                stack.up_until_healthy(args.healthy_timeout)
            with step("behaviour", timings):
                report["behaviour"] = check_behaviour(
                    stack, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prometheus_port}", args.wait
                )
            say("behaviour: " + json.dumps(report["behaviour"]))
        except CheckFailed:
            stack.print_logs()
            raise
    finally:
        with step("teardown", timings):
            left = stack.down()
            shutil.rmtree(WORK / "bundle", ignore_errors=True)
        if left:
            raise CheckFailed(f"teardown left {', '.join(left)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    engine = Engine()
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"timings_s": timings}
    try:
        check(args, engine, timings, report)
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    finally:
        engine.stop()
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"passed: {json.dumps(timings)} (report: {WORK / 'report.json'})")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(OSError):
        os.nice(10)  # the machine's cores are shared; every child (pip, debootstrap, compose) inherits it
    sys.exit(main())
