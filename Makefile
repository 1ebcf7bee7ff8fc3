# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench bench-tunnel fuzz clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,tun]'
	-$(PY) -m pip install -q uvloop
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m aioipsec demo $(ARGS)

test: $(STAMP)
	bash scripts/install-system-deps.sh
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) bench/esp.py $(ARGS)
	$(PY) bench/ike.py --quick

bench-tunnel: $(STAMP)   # root: namespaces, TUN, strongSwan libipsec, iperf3
	bash scripts/install-system-deps.sh
	$(PY) bench/tunnel.py $(ARGS)

fuzz: $(STAMP)           # bounded atheris runs of every parser (installs atheris into .venv)
	$(PY) -m pip install -q atheris
	$(PY) fuzz/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
