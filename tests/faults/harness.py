"""Real processes for the fault suite: a redis-server the test owns, ``tandem serve --workers 2``,
``tandem worker``; traffic threads that keep a ledger of every event they got a 202 for; and the check
that compares the ledger with what Redis holds. Everything listens on 127.0.0.1 and free ports only.

Counting what was stored: a user's history list is trimmed to the newest ``history_length`` events
(``HISTORY_LENGTH`` here), and a burst gives each user more than that, so the history alone cannot tell
a lost event from a trimmed one. The oracle reads two witnesses that no length trim touches: the user's
dedupe set (the idempotency key of every event the store accepted, written in the same atomic script as
the history and kept for the dedupe window, a day) and the user's sequence number (one per stored copy).
An event counts as stored when its key is in the dedupe set or it is in the retained history; copies
beyond one per stored event (sequence numbers above the distinct events, or a repeat in the history) are
duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.app.conftest import free_port
from tests.faults.oracle import Ledger, StoredView, count_stored, idempotency_key

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "faults-admin"
START_TIMEOUT_S = 90.0
HISTORY_LENGTH = 50  # events kept per user by the fault stack (the default is 200)


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(interval_s)
    return False


class RedisServer:
    """A redis-server on a free port with an fsync-always AOF, so a kill -9 + restart keeps every write."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
        ]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        assert wait_until(lambda: self.client().ping(), 20), "redis-server did not start"

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stall(self, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT: connections stay open, replies stop."""
        self.signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()


class Service:
    """One child process (API or worker) with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logdir: Path):
        self.name = name
        self.command = command
        self.env = env
        self.logfile = logdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.logfile, "ab")  # noqa: SIM115 (kept open for the process)
        self.process = subprocess.Popen(
            self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signals the whole process group (uvicorn's worker processes too)."""
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """Redis + 2 API worker processes + one ``tandem worker``, all on 127.0.0.1."""

    workdir: Path
    bundle: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    redis: RedisServer = field(init=False)
    api: Service = field(init=False)
    workers: list[Service] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    prefix: str = "faults"
    answered: set[int] = field(default_factory=set)  # API worker pids that answered /readyz with 200

    def __post_init__(self) -> None:
        self.redis = RedisServer(self.workdir / "redis")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        metrics_dir = self.workdir / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "TANDEM_BUNDLE_PATH": str(self.bundle),
            "TANDEM_REDIS_URL": self.redis.url,
            "TANDEM_KEY_PREFIX": self.prefix,
            "TANDEM_ADMIN_KEY": ADMIN_KEY,
            "TANDEM_LOG_LEVEL": "WARNING",
            "TANDEM_WORKER_CLAIM_IDLE_MS": "2000",
            "TANDEM_WORKER_BLOCK_MS": "200",
            "TANDEM_BUNDLE_SYNC_INTERVAL_S": "0.5",
            "TANDEM_DRAIN_SECONDS": "0",
            # below what any scenario's burst gives a user, however fast the machine: every count is checked
            # past the history trim (count_stored), not only on machines fast enough to pass the default 200
            "TANDEM_HISTORY_LENGTH": str(HISTORY_LENGTH),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        env.update(self.env_overrides)
        return env

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        serve = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(self.port)]
        self.api = Service("api", serve, self.env(), self.workdir)
        self.api.start()
        if not wait_until(self._ready, START_TIMEOUT_S, 0.25):
            raise RuntimeError(f"the API did not become ready:\n{self.api.log_tail()}")
        # After the API: `tandem serve` empties the shared metrics directory as it starts, which would
        # delete the files of a worker started beside it (its metrics then vanish from /metrics).
        self.start_worker()

    def start_worker(self) -> Service:
        """Starts a ``tandem worker`` and waits until it reports the bundle it serves (it has loaded it and
        runs its loop; the stream's consumer list only shows it once it has read an entry)."""
        name = f"worker-{len(self.workers)}"
        command = [sys.executable, "-m", "cli.main", "worker", "--consumer", name, "--metrics-port", "0"]
        worker = Service(name, command, self.env(), self.workdir)
        worker.start()
        self.workers.append(worker)
        assert worker.process is not None
        pid = worker.process.pid

        def reporting() -> bool:
            processes = self.redis.client().hkeys(f"{self.prefix}:bundle:served")
            return any(
                key.decode().startswith("worker:") and key.decode().endswith(f":{pid}") for key in processes
            )

        if not wait_until(reporting, START_TIMEOUT_S, 0.25):
            raise RuntimeError(f"{name} did not start:\n{worker.log_tail()}")
        return worker

    def _ready(self) -> bool:
        """Both API worker processes answer /readyz. One ready process is not enough: the supervisor
        restarts a worker that misses its first health checks (a loaded machine), and a scenario started
        then runs on one process (the reload scenario counts both)."""
        for _ in range(8):  # a new connection each time: SO_REUSEPORT spreads them over the workers
            answer = httpx.get(f"{self.base_url}/readyz", timeout=2)
            if answer.status_code == 200:
                self.answered.add(int(answer.json()["detail"]["pid"]))
        return len(self.answered & self.api_pids()) >= 2

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.api.stop()
        self.redis.stop()

    def api_pids(self) -> set[int]:
        """Children of the serve command: the uvicorn worker processes (and multiprocessing's helper)."""
        assert self.api.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.api.process.pid)], capture_output=True, text=True)
        return {int(pid) for pid in out.stdout.split()}

    def backlog_drained(self) -> bool:
        info = self.redis.client().xinfo_groups(f"{self.prefix}:events")
        return all(int(group["pending"]) == 0 and int(group.get("lag") or 0) == 0 for group in info)


class Traffic:
    """Threads sending recommends (training users) and event batches (fresh users) until stopped.

    Event batches are retried on 503 or a lost connection, the same batch each time, until a 202 (the
    documented client behaviour); an event counts as accepted once a 202 covered it."""

    def __init__(
        self,
        base_url: str,
        ledger: Ledger,
        *,
        tag: str,
        items: list[str],
        known_users: list[str],
        recommenders: int = 2,
        event_senders: int = 2,
        users_per_sender: int = 10,
        batch: int = 4,
    ):
        self.base_url = base_url
        self.ledger = ledger
        self.tag = tag
        self.items = items
        self.known_users = known_users
        self.recommenders = recommenders
        self.event_senders = event_senders
        self.users_per_sender = users_per_sender
        self.batch = batch
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.base_ts = int(time.time()) - 86400

    def users(self) -> list[str]:
        return [
            f"{self.tag}-s{s}-u{u}" for s in range(self.event_senders) for u in range(self.users_per_sender)
        ]

    def start(self) -> Traffic:
        for n in range(self.recommenders):
            self.threads.append(threading.Thread(target=self._recommend, args=(n,), daemon=True))
        for n in range(self.event_senders):
            self.threads.append(threading.Thread(target=self._events, args=(n,), daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _recommend(self, seed: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            n = seed
            while not self.stopping.is_set():
                n += 1
                user = self.known_users[n % len(self.known_users)]
                try:
                    response = client.post("/v1/recommend", json={"user_id": user, "k": 10})
                except httpx.HTTPError as error:
                    with self.ledger.lock:
                        self.ledger.requests += 1
                        self.ledger.failed += 1
                        self.ledger.errors[error.__class__.__name__] += 1
                    continue
                self.ledger.count(response.status_code)
                with self.ledger.lock:
                    if response.status_code == 429:
                        self.ledger.shed += 1
                    elif response.status_code != 200:
                        self.ledger.failed += 1

    def _events(self, sender: int) -> None:
        users = [f"{self.tag}-s{sender}-u{u}" for u in range(self.users_per_sender)]
        counter = 0
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stopping.is_set():
                events, keys = [], []
                for _ in range(self.batch):
                    counter += 1
                    user = users[counter % len(users)]
                    timestamp = self.base_ts + counter
                    keys.append((user, timestamp))
                    event = {
                        "user_id": user,
                        "item_id": self.items[counter % len(self.items)],
                        "action": "click",
                        "timestamp": timestamp,
                    }
                    if counter % 2:
                        event["event_id"] = f"{user}-{timestamp}"  # half with client ids, half hashed
                    events.append(event)
                with self.ledger.lock:
                    self.ledger.sent.update(keys)
                    self.ledger.keys.update(zip(keys, map(idempotency_key, events), strict=True))
                self._send_until_accepted(client, events, keys)

    def _send_until_accepted(
        self, client: httpx.Client, events: list[dict], keys: list[tuple[str, int]]
    ) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = client.post("/v1/events", json={"events": events})
            except httpx.HTTPError as error:
                with self.ledger.lock:
                    self.ledger.requests += 1
                    self.ledger.errors[error.__class__.__name__] += 1
                    self.ledger.event_503 += 1  # no answer: may or may not be stored; retry (safe)
                time.sleep(0.2)
                continue
            self.ledger.count(response.status_code)
            if response.status_code == 202:
                with self.ledger.lock:
                    self.ledger.accepted.update(keys)
                    self.ledger.deduplicated += int(response.json().get("duplicates", 0))
                return
            with self.ledger.lock:
                if response.status_code == 503:
                    self.ledger.event_503 += 1
                elif response.status_code == 429:
                    self.ledger.shed += 1
                else:
                    self.ledger.failed += 1
            time.sleep(float(response.headers.get("retry-after", "1")) / 4)


def stored_events(stack: Stack, users: list[str]) -> StoredView:
    client = stack.redis.client()
    view = StoredView({}, {}, Counter())
    for user in users:
        for raw in client.lrange(f"{stack.prefix}:u:{{{user}}}:h", 0, -1):
            view.history[(user, int(json.loads(raw)[3]))] += 1
        view.sequences[user] = int(client.hget(f"{stack.prefix}:u:{{{user}}}:s", "seq") or 0)
        view.keys[user] = {key.decode() for key in client.zrange(f"{stack.prefix}:u:{{{user}}}:d", 0, -1)}
    return view


def fresh_vectors(stack: Stack, users: list[str]) -> int:
    """How many users have a cached vector covering their last event."""
    client = stack.redis.client()
    fresh = 0
    for user in users:
        seq = int(client.hget(f"{stack.prefix}:u:{{{user}}}:s", "seq") or 0)
        vector_seq = client.hget(f"{stack.prefix}:u:{{{user}}}:v", "seq")
        fresh += int(seq > 0 and vector_seq is not None and int(vector_seq) == seq)
    return fresh


def settle_and_count(stack: Stack, ledger: Ledger, users: list[str], settle_s: float = 30) -> dict[str, Any]:
    """Waits for the worker to drain the stream, then compares the ledger with Redis."""
    wait_until(stack.backlog_drained, settle_s, 0.25)
    view = stored_events(stack, users)
    with_events = sum(1 for seq in view.sequences.values() if seq)
    wait_until(lambda: fresh_vectors(stack, users) == with_events, settle_s, 0.25)
    counted = count_stored(ledger, view)
    return {
        **ledger.as_dict(),
        "events_sent": len(ledger.sent),
        "events_accepted": len(ledger.accepted),
        "events_stored": counted["events_stored"],
        "events_duplicated": counted["events_duplicated"],
        "events_lost": counted["events_lost"],
        "events_trimmed_from_history": counted["events_trimmed_from_history"],
        "users_with_events": with_events,
        "users_with_fresh_vectors": fresh_vectors(stack, users),
    }


def catalogue_ids(bundle: Path) -> tuple[list[str], list[str]]:
    """(item raw ids, user raw ids) of a bundle, without the pad/unknown rows."""
    import pyarrow.parquet as pq

    items = [str(x) for x in pq.read_table(bundle / "catalogue.parquet").column("raw_id").to_pylist()[2:]]
    users = [str(x) for x in pq.read_table(bundle / "users.parquet").column("raw_id").to_pylist()[2:]]
    return items, users


def run_for(seconds: float) -> Iterator[float]:
    """Yields the elapsed seconds every ~0.1 s until ``seconds`` have passed."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        yield elapsed
        time.sleep(0.1)
