# p2pchat — the two commands: `make run` and `make test`. Each builds what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions the suite passed with: constraints.txt (ours), tools/interop/constraints.txt.
# py-libp2p, the interop peer, lives in its own environment so its dependencies never mix with ours.
INTEROP_VENV := .venv-interop
INTEROP_STAMP := $(INTEROP_VENV)/.installed
PYLIBP2P_VERSION := 0.8.1

.PHONY: run demo test check-slow lint typecheck unit venv interop-venv bench sim clean netns-deps

run: $(STAMP)
	$(BIN)/p2pchat node

# Three nodes on 127.0.0.1: a group, ratified messages, one node stopped and catching up.
demo: $(STAMP)
	$(BIN)/p2pchat demo

test: lint typecheck unit

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "p2pchat needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

interop-venv: $(INTEROP_STAMP)

$(INTEROP_STAMP): tools/interop/constraints.txt
	$(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c tools/interop/constraints.txt 'libp2p==$(PYLIBP2P_VERSION)'
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(INTEROP_STAMP) netns-deps
	P2PCHAT_INTEROP_PYTHON=$(CURDIR)/$(INTEROP_VENV)/bin/python $(BIN)/pytest -q

# The long scenario sweeps (every crash point of the chat scenario), kept out of `make test`.
check-slow: $(STAMP) $(INTEROP_STAMP) netns-deps
	P2PCHAT_INTEROP_PYTHON=$(CURDIR)/$(INTEROP_VENV)/bin/python $(BIN)/pytest -q -m slow

bench: $(STAMP) $(INTEROP_STAMP)
	$(BIN)/python tools/bench_secure.py
	P2PCHAT_INTEROP_PYTHON=$(CURDIR)/$(INTEROP_VENV)/bin/python $(BIN)/python tools/bench_transport.py

# Seeded fault schedules against the group engine (tests/chat/sim): `make sim SEED=18` replays
# and shrinks one, `make sim SEED=18 KEEP=0,2,3` replays a shrunk one, `make sim RUNS=100000`
# runs long schedules from seed START (default 0; TINY=1 for tiny ones); STRICT=1 adds the
# gated rules; MUTATE=<rule> switches an engine rule off (tests/chat/sim/mutations.py).
sim: $(STAMP)
	PYTHONPATH=tests $(BIN)/python -m chat.sim $(if $(SEED),--seed $(SEED)) \
		$(if $(KEEP),--keep $(KEEP)) $(if $(RUNS),--runs $(RUNS) $(if $(TINY),,--long)) \
		$(if $(START),--start $(START)) $(if $(LONG),--long) $(if $(TINY),--tiny) $(if $(STRICT),--strict) \
		$(if $(MUTATE),--mutate $(MUTATE))

clean:
	rm -rf $(VENV) $(INTEROP_VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# What the network-namespace tests need (iproute2 for namespaces and veths, nftables for the
# NATs of tests/net/test_autonat_netns.py and test_dcutr_netns.py); without them those tests skip
# and say so. `make test` runs it first: it installs only what is missing, and only as root with apt-get.
netns-deps:
	@if command -v ip >/dev/null 2>&1 && command -v nft >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing iproute2 and nftables for the network-namespace tests"; \
		apt-get install -y -qq --no-install-recommends iproute2 nftables >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  apt-get install -y -qq --no-install-recommends iproute2 nftables >/dev/null 2>&1; } || \
		echo "could not install iproute2/nftables: the network-namespace tests will skip"; \
	else echo "no iproute2/nftables (and not root with apt-get): the network-namespace tests will skip"; fi
