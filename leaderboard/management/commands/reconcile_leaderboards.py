import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client import start_http_server

from leaderboard.backends.redis import connection
from leaderboard.services import index_enabled, leaderboard_reconcile
from scoreboard.errors import REDIS_OUTAGES
from scoring.periods import DEFAULT_BOARD

LOCK_SECONDS = 600


class Stopped(BaseException):
    """SIGTERM arrived (a container or service manager stopping the loop). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped


class Command(BaseCommand):
    help = (
        "Compare the Redis leaderboard index with the database and repair any drift (a lost "
        "index is rebuilt). With --interval it keeps doing so until SIGTERM; several nodes may "
        "run it, a Redis lock lets one work at a time. --metrics-port serves its repair "
        "counts to Prometheus."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", default=DEFAULT_BOARD)
        parser.add_argument("--interval", type=int, default=0, help="Seconds between runs.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            help=(
                "With --interval: serve this process's Prometheus metrics (its repairs) on this "
                "port (0: any free port), for a scraper on the internal network. No "
                "authentication."
            ),
        )
        parser.add_argument("--metrics-address", default="127.0.0.1")

    def handle(
        self,
        *args: Any,
        board: str,
        interval: int,
        metrics_port: int,
        metrics_address: str,
        **options: Any,
    ) -> None:
        if not index_enabled():
            self.stdout.write("REDIS_URL is not set: boards are read from the database.")
            return
        if interval < 0:
            raise CommandError("--interval must be 0 (once) or more.")
        if not interval:
            try:
                self._run_once(board)
            except REDIS_OUTAGES as error:
                raise CommandError(f"Redis is unavailable: {error}") from error
            return
        # SIGTERM ends the loop at once, also in the middle of a pass: the lock is released on
        # the way out and a half-done pass leaves nothing wrong (every repair writes an absolute
        # total).
        previous_handler = signal.signal(signal.SIGTERM, _raise_stopped)
        metrics_server = None
        if metrics_port is not None:
            metrics_server = start_http_server(metrics_port, addr=metrics_address)[0]
            port = metrics_server.server_port
            self.stdout.write(f"metrics on http://{metrics_address}:{port}/metrics")
        try:
            while True:
                try:
                    self._run_once(board)
                except REDIS_OUTAGES as error:
                    self.stderr.write(f"Redis is unavailable, retrying: {error}")
                time.sleep(interval)
        except Stopped:
            self.stdout.write("stopped (SIGTERM)")
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()

    def _run_once(self, board: str) -> None:
        lock = connection().lock(f"lb-reconcile:{board}", timeout=LOCK_SECONDS)
        if not lock.acquire(blocking=False):
            self.stdout.write("another node is reconciling; skipped")
            return
        try:
            report = leaderboard_reconcile(board=board)
        finally:
            lock.release()
        if report.rebuilt:
            self.stdout.write(f"{board}: index was empty, rebuilt from the database")
        else:
            self.stdout.write(
                f"{board}: {report.checked} entries checked, {report.repaired} repaired, "
                f"{report.removed} stray entries removed"
            )
