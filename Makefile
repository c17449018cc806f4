# Two commands matter: `make run` and `make test`. Each sets up .venv on its own when it is
# missing or when a requirements file changed (the stamp is keyed on their contents).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-nodeps.txt requirements-dev.txt requirements-ray.txt
STAMP := $(VENV)/.stamp-$(shell cat $(REQS) | sha256sum | cut -c1-16)

.PHONY: run test lint setup browser clean

run: $(STAMP)
	$(PY) app.py

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -r requirements-ray.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	rm -f $(VENV)/.stamp-*
	touch $@

# Browser tests drive Debian's Chromium (Playwright's own download does not work offline).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf $(VENV) data
