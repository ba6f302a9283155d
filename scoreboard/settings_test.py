"""Test settings: the real settings with a fast password hasher and, on SQLite, a test
database in a file rather than in memory. Nothing else differs."""

import os
import tempfile

from scoreboard.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # An in-memory test database is shared-cache SQLite, where concurrent writers fail with
    # "database table is locked" instead of waiting; a file (one per test run) behaves as the
    # product's own database does under concurrent requests.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"scoreboard-test-{os.getpid()}.sqlite3")
    }
