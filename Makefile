# The two commands: `make run` serves the product, `make test` runs the whole test suite.
# Both create the virtual environment and install the pinned requirements first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# WebSocket frames over 1 MiB are cut off by the server itself (over 64 KiB: the app closes 4429).
# No per-message compression: compressing every board frame for every socket separately cost
# ~40% of a node's CPU per update and ~48 KiB per idle connection (bench/fanout.py).
# Client addresses come from the socket; trusted proxies are handled by the application.
UVICORN_FLAGS ?= --no-access-log --ws-max-size 1048576 --ws-per-message-deflate false --no-proxy-headers

.PHONY: run serve test reliability reliability-all bench chromium nginx promtool lint format schema migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.requirements: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.requirements

migrate: $(VENV)/.requirements
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

run: migrate
	$(BIN)/python manage.py load_actions
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py rebuild_leaderboards
	$(MAKE) serve

serve:
	$(BIN)/uvicorn scoreboard.asgi:application --host $(HOST) --port $(PORT) $(UVICORN_FLAGS)

test: $(VENV)/.requirements-dev chromium nginx promtool
	$(BIN)/pytest $(PYTEST_ARGS)

# The reliability suite (docs/reliability.md): real nodes on PostgreSQL and Redis, faults
# injected from outside. `reliability` runs the fast scenarios (CI), `reliability-all` all.
reliability: $(VENV)/.requirements-dev nginx
	$(BIN)/pytest tests/reliability $(PYTEST_ARGS)

reliability-all: $(VENV)/.requirements-dev nginx
	$(BIN)/pytest tests/reliability --slow $(PYTEST_ARGS)

$(VENV)/.requirements-bench: requirements.txt requirements-dev.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@ $(VENV)/.requirements-dev $(VENV)/.requirements

# The benchmark suite (bench/README.md) on the local PostgreSQL and Redis, one after the other so
# that no two share the cores. BENCH_ARGS=--quick for a short run.
# The fan-out runs again at 5,000 clients with only the leader scoring (one board update a
# second and nothing else). Each samples where the CPU goes with py-spy: the first two in a pass
# of their own, the fan-out in a run of its own at 5,000 clients, recorded apart.
bench: $(VENV)/.requirements-bench
	$(BIN)/python -m bench.score_updates --profile 32 $(BENCH_ARGS)
	$(BIN)/python -m bench.board_reads --profile $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout --clients 5000 --movers 1 $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout --clients 5000 --profile $(BENCH_ARGS)

# The live board's browser test (realtime/tests/test_live_page.py) runs Debian's chromium.
chromium:
	@command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The load balancer's test (scoreboard/tests/test_nginx.py) runs Debian's nginx with the
# committed docker/nginx/ config, as a process of its own on a loopback port: whether the
# package started a daemon on port 80 (in containers policy-rc.d usually stops it) is no matter.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (DEBIAN_FRONTEND=noninteractive \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx)

# The alert rules (docker/prometheus/) are checked and unit-tested by Prometheus's promtool.
promtool:
	@command -v promtool >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)

# mypy checks bench/ too, so the linters get the benchmark tools.
lint: $(VENV)/.requirements-bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(VENV)/.requirements-bench
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(VENV)/.requirements-dev
	$(BIN)/python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn

clean:
	rm -rf $(VENV) staticfiles
