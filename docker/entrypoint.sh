#!/bin/sh
# The image's entry point: prepares the container, then becomes its command (gunicorn, uvicorn or
# a manage.py command), which thus receives `docker stop`'s SIGTERM itself.
set -eu

# prometheus_client's multi-process mode keeps each process's metrics in files there; files
# left by the container's previous run would be counted again.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi

exec "$@"
