# Herald. `make run` brings up the console with demo data; `make test` runs the suite.
# Both use DATABASE_URL / REDIS_URL when set, else embedded servers under var/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: install run test bench lint

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

run: install
	$(PY) scripts/servers.py console

test: install
	$(PY) scripts/servers.py exec -- $(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) scripts/servers.py exec -- $(PY) benchmarks/run.py

lint: install
	$(PY) -m ruff check .
