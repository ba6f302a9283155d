"""The image's HEALTHCHECK: does this container's server answer /healthz?

    python /app/docker/healthcheck.py [PORT]

PORT is where the container's server listens: 8000 (the default) for the image's own command
and the API nodes, 8001 for the live nodes (docker/compose.yaml).

Django answers 400 to a Host outside ALLOWED_HOSTS before any view runs, so the probe sends the
first allowed host rather than 127.0.0.1, which production settings need not allow.
"""

import os
import sys
import urllib.request

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
first_allowed = os.environ.get("ALLOWED_HOSTS", "").split(",")[0].strip().lstrip(".")
host = first_allowed if first_allowed not in ("", "*") else "localhost"
request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
try:
    # No proxy from the environment: the server is in this container.
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=2)
except OSError as error:
    sys.exit(f"unhealthy: {error}")
