# vibeadmin: `make run` serves the app, `make test` passes the tests. Both set up what is
# missing first (`make install`) and are quick when nothing is.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint bench clean browser-deps services-deps bench-deps llama-server model

# llama-server's compile (CPU) and the default model's assembly (1.1 GB, mostly I/O) run side
# by side: a fresh machine is ready the assembly's time sooner (30 s from a fast package
# index, about 2 minutes from a slower one).
install: $(VENV)/.installed node_modules/.installed
	@$(MAKE) --no-print-directory -j2 llama-server model
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py collectstatic --noinput -v 0

# The default model (pool/model_file.py): assembled once into ~/.cache/vibeadmin/models/.
model: $(VENV)/.installed
	@$(PY) manage.py prepare_model

# llama-cpp-python compiles llama.cpp from source: about 4-7 minutes on 2 cores, once.
# A portable CPU build: a native one (-march=native) uses AMX tiles on CPUs that have
# them, and crashed with SIGSEGV at the first generation on this VM. For a GPU build:
#   make install LLAMA_CMAKE_ARGS="-DGGML_CUDA=on" LLAMA_REBUILD=1
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_VERSION := 0.3.36
ifdef LLAMA_REBUILD
ifeq ($(MAKELEVEL),0)  # once: not again in install's own sub-make
.PHONY: $(VENV)/.installed  # rebuild llama.cpp even though nothing else changed
endif
endif

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "vibeadmin needs Python 3.11 or newer (set PYTHON=python3.11)"; exit 1; }
	@test -x $(PY) || command -v c++ >/dev/null \
		|| { echo "llama-cpp-python compiles llama.cpp: install a C++ compiler first (apt-get install build-essential)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python packages into $(VENV) (the first time compiles llama.cpp: ~5 min on 2 cores)..."
	$(PIP) install -q --upgrade pip wheel
	$(if $(LLAMA_REBUILD),$(PIP) cache remove llama_cpp_python || true)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q 'llama-cpp-python[server]==$(LLAMA_VERSION)' \
		$(if $(LLAMA_REBUILD),--force-reinstall --no-deps)
	$(PIP) install -q -e '.[test,bench]'
	@touch $@

# llama.cpp's own server, from the llama.cpp source that llama-cpp-python vendors, with the
# same LLAMA_CMAKE_ARGS: about 6 minutes on 2 cores the first time, then cached outside the
# clone (~/.cache/vibeadmin/llama-server/), so fresh clones and later runs skip it.
llama-server: $(VENV)/.installed
	@LLAMA_VERSION=$(LLAMA_VERSION) LLAMA_CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" PIP="$(PIP)" \
		bin/build-llama-server $(if $(LLAMA_REBUILD),--rebuild)

node_modules/.installed: package.json
	@command -v npm >/dev/null || { echo "the pages' browser libraries come from npm: install Node.js 20+ and npm first"; exit 1; }
	@echo "Installing browser libraries from npm..."
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

run: install
	$(PY) manage.py serve

# Headless Chromium for the browser tests and nginx/wrk for the benchmarks, from Debian.
browser-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; } \
		|| echo "warning: could not install chromium; browser tests will be skipped"

# Real PostgreSQL and Redis for the scale-out tests (they start their own on free ports).
services-deps:
	@command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server postgresql; } \
		|| echo "warning: could not install redis-server/postgresql; the scale-out tests will be skipped"

# nginx and wrk, from Debian: the benchmarks measure against nginx, and the suite runs the
# benchmarks' smoke test (a fresh machine lacks both).
bench-deps:
	@command -v nginx >/dev/null && command -v wrk >/dev/null \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nginx-light wrk; } \
		|| echo "warning: could not install nginx/wrk; the benchmarks' smoke test will fail"

# One style, enforced: `ruff format .` writes it, the check fails the run where code strays.
test: install browser-deps services-deps bench-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pool vibeadmin
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

# `make bench BENCH_ARGS=--quick` for shorter runs; BENCH_SCALE=0.5 scales every duration.
bench: install bench-deps
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules staticfiles var
