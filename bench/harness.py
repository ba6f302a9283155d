"""What every benchmark shares: the machine and commit it ran on, app nodes started on
loopback with their CPU time measured, databases of its own, latency summaries, and the
results written to `bench/results/` as JSON and a Markdown table.

Benchmarks run against the PostgreSQL and Redis named by BENCH_DATABASE_URL and
BENCH_REDIS_URL (defaults: the machine's local services), never the test suite's.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
# Settings every served node gets: production mode, fixed secrets (nothing here is secret).
NODE_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
    "DEBUG": "0",
    "SECRET_KEY": "bench-secret-key-" + "s" * 40,
    "SCOREBOARD_JWT_SIGNING_KEY": "bench-jwt-key-" + "j" * 40,
    "SCOREBOARD_ENCRYPTION_KEY": "bench-encryption-key-" + "e" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
}


# --- where and what ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare two runs."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        postgres = connection.execute("SHOW server_version").fetchone()
    redis_version = subprocess.run(  # noqa: S603
        ["redis-cli", "-u", REDIS_URL, "INFO", "server"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres[0] if postgres else None,
        "redis": next(
            (
                line.split(":", 1)[1].strip()
                for line in redis_version.splitlines()
                if line.startswith("redis_version")
            ),
            None,
        ),
    }


def commit(*, results: Sequence[str] = ("bench/results",)) -> str:
    """The checked-out commit, with `+changes` when tracked files other than the `results`
    folders or files differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    # Results written by an earlier benchmark of the same run do not count as changes.
    dirty = subprocess.run(  # noqa: S603
        [  # noqa: S607
            "git",
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            *(f":(exclude){path}" for path in results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head}{'+changes' if dirty else ''}"


# --- figures --------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no samples)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in seconds, in milliseconds."""
    return {
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 2),
        "max_ms": round(max(seconds, default=0.0) * 1000, 2),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children that have been waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (workers of a server)."""
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found.extend(process_tree(int(child)))
    return found


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(member) for member in process_tree(pid))


@dataclass
class Node:
    """An app node serving on loopback."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def rss_bytes(self) -> int:
        return sum(rss_bytes(member) for member in process_tree(self.process.pid))


def wait_for_health(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"node exited during start-up: {process.args!r}") from None
            time.sleep(0.2)
    raise RuntimeError(f"node did not answer /healthz within {timeout} s")


SERVERS = ("uvicorn", "gunicorn")


def server_command(server: str, *, port: int, workers: int) -> list[str]:
    """How the deployment runs a node (docs/deploy.md): uvicorn with `make serve`'s flags, the
    ASGI app (live nodes, the embedded default); gunicorn with docker/gunicorn.conf.py, the
    WSGI app (API nodes)."""
    if server == "gunicorn":
        return [
            PYTHON,
            "-m",
            "gunicorn",
            "--config",
            str(ROOT / "docker" / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ]
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "scoreboard.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--ws-max-size",
        "1048576",
        "--ws-per-message-deflate",
        "false",
        "--no-proxy-headers",
        "--workers",
        str(workers),
    ]


@contextmanager
def served_node(
    env: dict[str, str], *, log_dir: Path, server: str = "uvicorn", workers: int = 1
) -> Iterator[Node]:
    """Start an app node (`server` with `workers` processes) on a free loopback port, wait
    for /healthz, and stop it by PID afterwards."""
    port = free_port()
    argv = server_command(server, port=port, workers=workers)
    log_path = log_dir / f"node-{port}.log"
    with open(log_path, "wb") as output:
        process = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT,
            env={**os.environ, **NODE_SETTINGS, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        yield Node(url=url, process=process, log_path=log_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process's group (a server and its workers), SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command with the node settings; returns its output."""
    return run_python(env, "manage.py", *args)


def run_python(env: dict[str, str], *args: str) -> str:
    """Run Python with `args` in a process of its own with the node settings (Django set up
    there, not here); returns what it printed."""
    result = subprocess.run(  # noqa: S603
        [PYTHON, *args],
        cwd=ROOT,
        env={**os.environ, **NODE_SETTINGS, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def complete_action(
    user: Any, *, key_id: str, secret: str, action_type: str
) -> tuple[uuid.UUID, datetime, Any]:
    """Complete an action for `user` the real way, with a game server's signed proof; returns
    its actionId, its timestamp and the issued token (scoring.services.IssuedActionToken).
    For processes where Django is set up."""
    from django.utils import timezone

    from scoring.anticheat import hmac_sha256_hex
    from scoring.services import ActionClaim, action_complete

    action_id = uuid.uuid4()
    moment = timezone.now()
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    issued = action_complete(
        user=user,
        claim=ActionClaim(
            action_type=action_type,
            action_id=action_id,
            action_id_text=str(action_id),
            timestamp=moment,
            timestamp_text=stamp,
            key_id=key_id,
            signature=hmac_sha256_hex(secret, f"{user.pk}:{action_type}:{action_id}:{stamp}"),
        ),
    )
    return action_id, moment, issued


# --- databases ------------------------------------------------------------------------------


def database_url(name: str) -> str:
    parts = urlsplit(DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_database(name: str) -> Iterator[str]:
    """A new PostgreSQL database (dropped afterwards), migrated; yields its URL."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    try:
        manage({"DATABASE_URL": url}, "migrate", "--noinput", "-v", "0")
        yield url
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- profiles -------------------------------------------------------------------------------


@dataclass
class Profile:
    """Sampled stacks of a node's processes (py-spy), reduced to where the time goes: the
    product's own functions with everything they call, and the functions that burn it."""

    path: Path
    samples: int
    ours: list[dict[str, Any]]
    leaves: list[dict[str, Any]]


@contextmanager
def profiled(node: Node, path: Path, *, rate: int = 200) -> Iterator[list[Profile]]:
    """Sample every process of `node` with py-spy while the block runs; the yielded list gets
    the profile when the block ends. Only threads holding the GIL are sampled, so the shares
    are of Python's CPU time, not of time spent waiting for PostgreSQL or Redis. Collapsed
    stacks go to `path` (flamegraph.pl input)."""
    recorder = subprocess.Popen(  # noqa: S603
        [
            str(Path(PYTHON).with_name("py-spy")),
            "record",
            "--pid",
            str(node.process.pid),
            "--subprocesses",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--gil",
            "--nonblocking",
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    found: list[Profile] = []
    try:
        yield found
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop(recorder)
    if path.exists():
        summary = summarise_profile(path)
        summary.path = store_profile(path)
        found.append(summary)


def store_profile(path: Path) -> Path:
    """Keep py-spy's collapsed stacks gzipped, without the process and thread frames (which
    repeat each server process's command line on every line) and without line numbers,
    merging the stacks that become equal. Returns the stored file (`zcat` it into
    flamegraph.pl; speedscope.app reads it unzipped)."""
    merged: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [
            _function(frame)
            for frame in stack.split(";")
            if not frame.startswith(("process ", "thread "))
        ]
        key = ";".join(frames)
        merged[key] = merged.get(key, 0) + int(count_text)
    stored = path.with_name(path.name + ".gz")
    with gzip.open(stored, "wt") as output:
        output.writelines(f"{stack} {count}\n" for stack, count in sorted(merged.items()))
    path.unlink()
    return stored


def summarise_profile(path: Path, *, limit: int = 20) -> Profile:
    """Shares of the busy samples (idle frames, waiting in select/epoll or on a lock, left
    out): per function of the product's own apps, counting what it calls (once per stack);
    and per function at the top of the stack, where the CPU is spent."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [
            frame for frame in stack.split(";") if not frame.startswith(("process ", "thread "))
        ]
        if not frames or _idle(frames[-1]):
            continue
        count = int(count_text)
        total += count
        for function in {_function(frame) for frame in frames if _ours(frame)}:
            inclusive[function] = inclusive.get(function, 0) + count
        leaf = _function(frames[-1])
        own[leaf] = own.get(leaf, 0) + count

    def shares(counts: dict[str, int], column: str) -> list[dict[str, Any]]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        return [
            {"function": function, column: round(100 * samples / max(1, total), 1)}
            for function, samples in ranked
        ]

    return Profile(
        path=path,
        samples=total,
        ours=shares(inclusive, "with what it calls %"),
        leaves=shares(own, "own %"),
    )


PRODUCT_PACKAGES = ("accounts/", "leaderboard/", "realtime/", "scoreboard/", "scoring/")


def _ours(frame: str) -> bool:
    """py-spy names files relative to the import path: the product's are `scoring/…` etc."""
    location = frame.partition(" (")[2].removeprefix(f"{ROOT}/")
    return location.startswith(PRODUCT_PACKAGES)


IDLE_FRAMES = ("select (", "poll (", "epoll", "wait (threading", "_worker (concurrent", "accept (")


def _idle(frame: str) -> bool:
    return any(marker in frame for marker in IDLE_FRAMES)


def _function(frame: str) -> str:
    """`name (path/to/module.py:line)` → `name (package/module.py)`; unchanged if it is
    already so."""
    name, _, location = frame.partition(" (")
    filename, _, line = location.removesuffix(")").rpartition(":")
    if not line.isdigit():
        filename = location.removesuffix(")")
    for anchor in ("site-packages/", "python3.11/", f"{ROOT}/"):
        if anchor in filename:
            filename = filename.split(anchor, 1)[1]
            break
    return f"{name} ({filename})"


# --- results --------------------------------------------------------------------------------


@dataclass
class Report:
    """One benchmark run: its figures, written as JSON and a Markdown table."""

    name: str
    title: str
    command: str = field(
        default_factory=lambda: shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    )
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    sections: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, heading: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
        """Add a table; each row is a dict keyed by the columns. Printed as it is added."""
        self.sections.append({"heading": heading, "columns": list(columns), "rows": list(rows)})
        print(f"\n{heading}\n{_markdown_table(columns, rows)}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text, flush=True)

    def artifact(self, suffix: str) -> Path:
        """Where a file of this run's goes: `bench/results/<name>-<timestamp>-<suffix>`."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        return RESULTS_DIR / f"{self.name}-{self.stamp}-{suffix}"

    def profile(self, heading: str, profile: Profile) -> None:
        """Where the time goes, and where the whole sampled profile is."""
        self.table(
            f"{heading} ({profile.samples:,} busy samples): the product's functions",
            ["function", "with what it calls %"],
            profile.ours,
        )
        self.table(
            f"{heading}: the functions that spend it",
            ["function", "own %"],
            profile.leaves,
        )
        self.note(
            f"Profile ({heading}): py-spy, collapsed stacks in "
            f"{profile.path.relative_to(ROOT)} (gzipped; flamegraph.pl or speedscope.app read "
            "them); "
            "idle frames (waiting for a socket or a lock) are left out of the shares."
        )

    @property
    def stamp(self) -> str:
        """The run's timestamp as it appears in result file names."""
        return self.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")

    def write(self) -> Path:
        """`bench/results/<name>-<timestamp>.json` and `.md`, and `<name>-latest.md`."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = self.stamp
        document = {
            "name": self.name,
            "title": self.title,
            "started_at": self.started_at,
            "command": self.command,
            "commit": commit(),
            "machine": machine(),
            "sections": self.sections,
            "notes": self.notes,
        }
        json_path = RESULTS_DIR / f"{self.name}-{stamp}.json"
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        markdown = self.markdown(document)
        (RESULTS_DIR / f"{self.name}-{stamp}.md").write_text(markdown)
        (RESULTS_DIR / f"{self.name}-latest.md").write_text(markdown)
        return json_path

    @staticmethod
    def markdown(document: dict[str, Any]) -> str:
        lines = [
            f"# {document['title']}",
            "",
            f"- run: {document['started_at']}, commit `{document['commit']}`",
            f"- command: `{document['command']}`",
            "- machine: "
            + ", ".join(f"{key} {value}" for key, value in document["machine"].items()),
        ]
        for section in document["sections"]:
            lines += [
                "",
                f"## {section['heading']}",
                "",
                _markdown_table(section["columns"], section["rows"]),
            ]
        if document["notes"]:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in document["notes"]]
        return "\n".join(lines) + "\n"


def _markdown_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
