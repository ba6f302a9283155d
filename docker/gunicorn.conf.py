"""gunicorn for the API nodes: the REST API, admin, static files and health checks through the
WSGI application (docs/deploy.md, "Two kinds of node"). The live channels (/ws/ and the event
stream) stay on uvicorn, on the live nodes.

    gunicorn --config docker/gunicorn.conf.py

Under WSGI a request costs about half the server CPU it costs under ASGI, which hops to a
thread and back for every request. Sync workers serve one request at a time each; nginx in
front reads whole requests and buffers whole responses, so no worker waits on a slow client.
"""

import os

from django.conf import settings
from gunicorn import glogging

from scoreboard.config import env_int

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")

wsgi_app = "scoreboard.wsgi:application"
bind = ["0.0.0.0:8000"]
worker_class = "sync"
# A worker waits on PostgreSQL and Redis for part of each request, so two per core keep the
# cores busy. The default counts the cores this process may run on, not a CPU quota: under a
# quota, set GUNICORN_WORKERS (docs/deploy.md, "Sizing"). Not WEB_CONCURRENCY, which uvicorn
# reads too: the live nodes run one process each.
workers = env_int(os.environ, "GUNICORN_WORKERS", 2 * len(os.sched_getaffinity(0)), minimum=1)
# nginx stops waiting for an answer after 30 s (proxy_read_timeout), so a worker still busy
# then is stuck: it is replaced. The app's own waits (database pool 5 s, Redis 2 s) are shorter.
timeout = 30
# On SIGTERM, requests in progress may finish within this, under `docker stop`'s 10 s.
graceful_timeout = 8
# No --max-requests: in Prometheus multi-process mode every replaced worker leaves its
# counter and histogram files behind, and every scrape reads them all.

# The heartbeat each worker touches for the timeout above: in memory, since a write to the
# container's disk-backed /tmp can stall a worker.
worker_tmp_dir = "/dev/shm"  # noqa: S108
# The client address and scheme are the application's to decide (SCOREBOARD_TRUSTED_PROXIES,
# SCOREBOARD_BEHIND_TLS_PROXY), whatever address nginx has: as uvicorn's --no-proxy-headers.
forwarded_allow_ips = ""
# The container is managed by its orchestrator, not by gunicorn; the socket's default place,
# under $HOME, is read-only in the image.
control_socket_disable = True

# gunicorn's own lines (start, workers booted, stuck workers replaced) in the format of the
# app's (LOG_FORMAT), and no access log besides the app's request line: the app's logging,
# which names gunicorn's loggers too, before the workers load the app.
logconfig_dict = settings.LOGGING


class _WithoutAccessLog(glogging.Logger):
    """With a logging config gunicorn builds an access line for every request even though
    its access logger has no handler, only to drop it: about 3% of a top-10 read's CPU."""

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        return None


logger_class = _WithoutAccessLog
