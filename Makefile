# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench clean

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
	$(PY) bench/esp.py

clean:
	rm -rf $(VENV) build *.egg-info
