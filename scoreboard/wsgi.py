"""WSGI entry point: the API nodes serve the REST API from gunicorn's workers with it
(docker/gunicorn.conf.py); the live channels need the ASGI application (scoreboard/asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")

application = get_wsgi_application()
