# pichat's developer entry points. Every target does its own set-up on a fresh
# Debian machine (as root): apt packages, a venv in .venv, pip installs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache

# Debian packages the test suite drives for real: Chromium for the page,
# debootstrap + systemd-nspawn for the package and the Ansible role;
# libjs-jquery for the seed tutorial's legacy page (tests/browser/test_legacy.py);
# redis-server for the scale-out tests (each starts its own on loopback).
HOST_PACKAGES := chromium fonts-dejavu-core debootstrap systemd-container \
	openssh-client iproute2 ca-certificates util-linux libjs-jquery redis-server

.PHONY: run test test-fast coverage lint bench deb deb-arm64-check clean venv dev-venv host-packages icons

# Runtime-only venv: what `make run` needs.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv && \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# Development venv: adds the test, lint and provisioning tools.
$(VENV)/.dev: $(VENV)/.runtime pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

$(CACHE)/host-packages: Makefile
	@missing=$$(for p in $(HOST_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing host packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $$missing; \
	fi
	mkdir -p $(CACHE) && touch $@

host-packages: $(CACHE)/host-packages

## make run: pichat on port 3000 with its embedded defaults (history in ./var,
## the page from ./public). PICHAT_CONFIG= (empty) ignores /etc/pichat/pichat.toml.
run: $(VENV)/.runtime
	PICHAT_CONFIG= $(BIN)/pichat serve

## make test: lint, then the whole suite (unit, server, browser, package, role).
test: $(VENV)/.dev $(CACHE)/host-packages lint
	$(BIN)/python -m pytest --durations=15

## make test-fast: the suite without the browser and the Debian 13 root filesystem.
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not browser and not system"

## make coverage: branch coverage of pichat/ by the unit, in-process and process
## tests (no browser, no container).
coverage: $(VENV)/.dev
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest -q -m "not browser and not system" \
		--ignore=tests/ansible --ignore=tests/package; status=$$?; \
	$(BIN)/python -m coverage combine -q && \
	$(BIN)/python -m coverage report --show-missing --skip-covered && exit $$status

## make icons: public/icons/*.png from public/icons/icon.svg, drawn by Debian's Chromium
## (the PNGs are committed; run after editing the SVG).
icons: $(VENV)/.dev $(CACHE)/host-packages
	$(BIN)/python -m tools.icons

lint: $(VENV)/.dev
	$(BIN)/ruff check pichat tests bench tools
	$(BIN)/ruff format --check pichat tests bench tools
	$(BIN)/mypy pichat

## make bench: pichat against a naive broadcaster and a Node.js ws room; prints a table,
## writes bench/results/latest.json.
bench: $(VENV)/.dev
	$(BIN)/python -m bench

## make deb: dist/pichat_<version>_all.deb, built inside a cached Debian 13 root.
deb: $(CACHE)/host-packages
	bash packaging/build-deb.sh

## make deb-arm64-check: the .deb in an emulated arm64 Debian 13 root answers a chat round trip.
deb-arm64-check: deb $(VENV)/.dev
	bash packaging/arm64-check.sh

clean:
	rm -rf $(VENV) $(CACHE) dist build var *.egg-info
