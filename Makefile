# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs the project (pinned in pyproject.toml) into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CXR128 ?= ../shared/data/cxr128

.PHONY: install demo test test-node-loss results-cpu fidelity fidelity-quick fidelity-sanity browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the viewer test (Debian package; CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the viewer test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: chromium could not be installed; the viewer test will be skipped"; }

demo: $(STAMP)
	$(BIN)/raygan demo --out runs/demo

# The bring-your-own-classifier test starts its own Serve, which does not come up again after the
# service tests' Serve shut down in the same Ray session: it runs in a second pytest session.
# The multi-node tests start their own Ray cluster (one driver connects to one cluster): a third session.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q --durations=25 --ignore=tests/test_byo_classifier.py --ignore=tests/multinode
	$(BIN)/python -m pytest -q --durations=5 tests/test_byo_classifier.py
	$(BIN)/python -m pytest -q --durations=5 -m multinode tests/multinode

# Only the node-loss tests (tests/multinode, marker nodeloss; also part of `make test`): a node removed
# mid-training, mid-bulk-job and under the service. 2026-12-04: 3 of 3 runs of tests/multinode passed idle (about 90 s), 1 of 1
# beside two busy loops on the 2 cores (270 s).
test-node-loss: $(STAMP)
	$(BIN)/python -m pytest -q --durations=5 -m nodeloss tests/multinode

results-cpu: $(STAMP)
	$(BIN)/raygan study --preset small --data $(CXR128) --out runs/results-cpu --classifier-epochs 8 \
	  --gan-epochs 20 --classifier-cap 150 --gan-cap 900 --images 64 --authors-cap 1800 \
	  --consistency-z1 1000 --consistency-repeats 5 --threads 1

# The ground-truth fidelity benchmark (docs/fidelity.md): reported seeds 1-3, four cells each, three at a time
# (the reported runs: 48-64 min on the 2-core machine; 63 min twice on 2026-12-07 with the resize generator; the GAN
# epochs stayed below the stage caps).
fidelity: $(STAMP)
	$(BIN)/raygan fidelity --workers 3 --docs docs

# Its development run: seed 0, the three marker cells at once (where settings and the verdict rule were chosen).
fidelity-quick: $(STAMP)
	$(BIN)/raygan fidelity --quick --docs docs

# The full-pipeline sanity check: GANs retrained against a randomised and a label-permuted classifier.
fidelity-sanity: $(STAMP)
	$(BIN)/raygan fidelity --sanity --docs docs

clean:
	rm -rf runs .pytest_cache
