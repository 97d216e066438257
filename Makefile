# tether's commands. Each one builds .venv by itself on a fresh machine (Python >= 3.11, pip).
#
#   make demo    examples/quickstart.py on the local cluster
#   make test    the whole test suite            (PYTEST_ARGS="-k name" to pick tests)
#   make bench   tether next to a Ray actor and a bare FastAPI endpoint -> bench/results/
#                (BENCH_ARGS=--quick: a ~1 min smoke run; installs wrk with apt-get if root)
#   make lint    ruff, and the layer rules (lint-imports: contracts in pyproject.toml)
#   make clean   remove .venv, caches and bench results (stops a local daemon run from this .venv)
#
# Every package is installed at the exact version pinned in constraints.txt (`make constraints`
# re-resolves it). Two steps, each done once: `make demo` installs tether and its runtime deps only
# (a few seconds); `make test`, `make lint` and `make venv` add the test extras (Airflow, Prefect,
# Dagster, pytest, SkyPilot...) the first time they run. Each step is keyed on the contents of
# pyproject.toml and constraints.txt: when neither changed, it does nothing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS := constraints.txt
# Not --quiet: pip's "Collecting ..." and "Installing collected packages" lines are the progress a
# first run shows; --progress-bar off keeps them one line each in a log too.
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check --progress-bar off -c $(CONSTRAINTS)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The extras whose pins constraints.txt holds (`make constraints`).
PINNED_EXTRAS := dev,bench,airflow,prefect,dagster,data,notebook
# What `make test` installs: the test tools and the orchestrators the provider tests run.
TEST_EXTRAS := dev,airflow,prefect,dagster,data,notebook
BENCH_EXTRAS := $(TEST_EXTRAS),bench

KEY := $(shell cat pyproject.toml $(CONSTRAINTS) 2>/dev/null | cksum | cut -d' ' -f1)
# tether and its runtime deps (what `make demo` needs); then the test extras on top (STAMP).
BASE_STAMP := $(VENV)/.installed-base-$(KEY)
STAMP := $(VENV)/.installed-$(KEY)
BENCH_STAMP := $(VENV)/.installed-bench-$(KEY)

# A .venv whose interpreter no longer runs (Python moved or upgraded) is rebuilt.
ifneq ($(shell $(PY) -c 'print("ok")' 2>/dev/null),ok)
$(BASE_STAMP): FORCE
endif

# `$(call PHASE,what,command)`: one line saying what is being installed, pip's own lines, then how
# long it took, so a first run is never a long silence.
define PHASE
@echo "==> installing $(1) into $(VENV) (versions pinned in $(CONSTRAINTS))"
@start=$$(date +%s); ( $(2) ); echo "==> $(1): done in $$(( $$(date +%s) - start )) s"
endef

.PHONY: help venv demo test bench lint clean constraints constraints-sky sky-overlay FORCE
FORCE:

help:
	@sed -n '3,8s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

$(BASE_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "$(CONSTRAINTS) pins packages for Python >= 3.11; run with PYTHON=python3.11 (or newer)")'
	@if ! $(PY) -c '' 2>/dev/null; then \
	    rm -rf $(VENV); echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); fi
	@rm -f $(VENV)/.installed-*
	$(call PHASE,pip setuptools wheel,$(PIP_INSTALL) --upgrade pip setuptools wheel)
	$(call PHASE,tether,$(PIP_INSTALL) --no-build-isolation --editable .)
	@touch $@

$(STAMP): $(BASE_STAMP)
	$(call PHASE,tether[$(TEST_EXTRAS)] (the test extras),$(PIP_INSTALL) --no-build-isolation --editable '.[$(TEST_EXTRAS)]')
	$(call PHASE,the sky extra (SkyPilot: see MAKE_SKY_OVERLAY),$(MAKE_SKY_OVERLAY))
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(call PHASE,tether[bench] (Ray...),$(PIP_INSTALL) --no-build-isolation --editable '.[$(BENCH_EXTRAS)]')
	@touch $@

# The quickstart uses the default local cluster ($TETHER_HOME, default ~/.tether). A daemon left
# there by an older run is stopped first if it is stale (see DAEMON_CHECK below); a current one is
# kept, with the objects it serves.
demo: $(BASE_STAMP)
	@$(PY) -c "$$DAEMON_CHECK" stale
	$(PY) examples/quickstart.py

# The layer rules first (a second): a test run that breaks them fails before any test runs.
# TEST_WORKERS test processes (pytest-xdist; tests/conftest.py's scheduler keeps each folder of
# integration and provider tests in one): the suite waits on daemons and orchestrators half the time, so two
# processes use the two cores. TEST_WORKERS=0: one process, as before.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	@start=$$(date +%s); $(PY) tests/integration/launchers/sky_server_venv.py \
	  && echo "==> SkyPilot's API-server venv for the tests: ready in $$(( $$(date +%s) - start )) s"
	$(VENV)/bin/pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# Ray, aiohttp and matplotlib come with the bench extra; wrk (Debian's package) is installed by
# bench/run.py when missing and run as root, else its figure is skipped with the reason.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	@if $(PY) -c '' 2>/dev/null; then $(PY) -c "$$DAEMON_CHECK" ours; fi
	rm -rf $(VENV) .venv-skyserver .pytest_cache .ruff_cache build dist src/*.egg-info bench/results
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +

# The sky extra (SkyPilot) next to the test extras. SkyPilot caps click<8.2 and uvicorn<0.36 for its
# CLI and its API server; import-linter (dev) needs click>=8.2 and Airflow 3.3 uvicorn>=0.37, so pip
# cannot resolve them in one venv. SkyPilot goes in without its own requirements, then the rest of
# them (all but click and uvicorn) and the extra's other packages, at the pins of $(CONSTRAINTS).
# tether's tests use SkyPilot's classes, catalogs and exceptions, not its CLI or API server.
# `pip install 'tether[sky]'` on its own resolves as usual.
MAKE_SKY_OVERLAY = $(PY) -c "$$SKY_REQUIREMENTS" skypilot > $(VENV)/sky-requirements.txt \
    && $(PIP_INSTALL) --no-deps -r $(VENV)/sky-requirements.txt \
    && $(PY) -c "$$SKY_REQUIREMENTS" rest > $(VENV)/sky-requirements.txt \
    && $(PIP_INSTALL) -r $(VENV)/sky-requirements.txt

# Run as `python -c "$$SKY_REQUIREMENTS" skypilot|rest`: the sky extra's SkyPilot pin, or what it
# needs besides (SkyPilot's own requirements but click and uvicorn, and the extra's other entries).
define SKY_REQUIREMENTS
import sys, tomllib
from importlib.metadata import requires
from packaging.requirements import Requirement
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["sky"]
if sys.argv[1] == "skypilot":
    print(*[r for r in extra if Requirement(r).name == "skypilot"], sep="\n")
    sys.exit(0)
needs = [r for r in extra if Requirement(r).name != "skypilot"]
for text in requires("skypilot"):
    req = Requirement(text)
    if req.name.lower() in ("click", "uvicorn") or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    needs.append(str(req))
print(*needs, sep="\n")
endef
export SKY_REQUIREMENTS

# Re-resolve every pin from scratch (the newest versions pyproject.toml allows), in a throwaway venv.
constraints:
	rm -rf .venv-resolve
	$(PYTHON) -m venv .venv-resolve
	.venv-resolve/bin/pip install --disable-pip-version-check --quiet --upgrade pip setuptools wheel
	.venv-resolve/bin/pip install --disable-pip-version-check --quiet --editable '.[$(PINNED_EXTRAS)]'
	$(MAKE) constraints-sky
	{ echo "# Exact pins for tether's base dependencies and its $(PINNED_EXTRAS) extras (plus pip/setuptools/wheel,"; \
	  echo "# which build the editable install without build isolation). \`make venv\` installs with -c this file."; \
	  echo "# Resolved with pip on $$(.venv-resolve/bin/python -c 'import platform as p; print(p.python_implementation(), p.python_version() + ",", p.system().lower(), p.machine())'), on $$(date -u +%F). Regenerate with \`make constraints\`."; \
	  echo "# fastapi stays <0.137 (pyproject): Airflow 3.3 caps it. The sky extra is installed apart (Makefile: MAKE_SKY_OVERLAY),"; \
	  echo "# so skypilot's click<8.2 and uvicorn<0.36 are not met in the test venv: tether uses neither its CLI nor its API server."; \
	  .venv-resolve/bin/pip freeze --all --exclude-editable; } > $(CONSTRAINTS)
	rm -rf .venv-resolve

# The sky extra in the resolve venv, the way `make venv` installs it (newest versions, no pins).
constraints-sky:
	$(MAKE) PY=.venv-resolve/bin/python PIP_INSTALL='.venv-resolve/bin/pip install --disable-pip-version-check --quiet' VENV=.venv-resolve sky-overlay

sky-overlay:
	$(MAKE_SKY_OVERLAY)

# Run as `python -c "$$DAEMON_CHECK" stale|ours` with the venv's interpreter.
#   stale: stop the local daemon if it was started by another interpreter (another checkout or
#          venv), runs another tether version, or started before tether's code last changed.
#   ours:  stop it if it runs this venv's interpreter (before `make clean` deletes it).
# A daemon.json whose pid now belongs to some other process (the daemon died without cleaning up,
# e.g. a reboot) is removed, and that process is left alone.
define DAEMON_CHECK
import json, os, sys
from pathlib import Path
import tether
from tether._version import __version__
from tether.state import cluster_dir

mode, state = sys.argv[1], cluster_dir("local")
try:
    record = json.loads((state / "daemon.json").read_text())
    pid = int(record["pid"])
    os.kill(pid, 0)
except (OSError, ValueError, KeyError, TypeError):
    sys.exit(0)  # no daemon: the launcher starts a fresh one on demand
try:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    argv = [a.decode(errors="replace") for a in argv]
except OSError:
    argv = None  # no /proc: judge by version and age only
if argv is not None and "tether.daemon" not in argv:
    for name in ("daemon.json", "daemon.pid"):
        (state / name).unlink(missing_ok=True)
    print(f"removed a stale daemon record in {state} (pid {pid} is no longer a tether daemon)")
    sys.exit(0)
ours = argv is None or os.path.abspath(argv[0]) == os.path.abspath(sys.executable)
newest = max(p.stat().st_mtime for p in Path(tether.__file__).parent.rglob("*.py"))
if mode == "ours":
    why = "its .venv is being removed" if ours else None
elif not ours:
    why = f"it runs {argv[0]}, not {sys.executable}"
elif record.get("tether") != __version__:
    why = f"it runs tether {record.get('tether')}, this venv has {__version__}"
elif newest > float(record.get("started", 0)):
    why = "tether's code changed after it started"
else:
    why = None
if why:
    print(f"stopping the local daemon (pid {pid}) in {state}: {why}")
    tether.cluster("local").teardown()
endef
export DAEMON_CHECK
