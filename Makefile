# gem-transfer — every target works on a fresh clone; `make setup` is implied where needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser screenshot docs quickstart test test-fast bench bench-scale bench-transfer bench-baseline bench-vm-start bench-teachers bench-knowledge bench-cycle bench-world bench-traffic bench-headroom bench-levers bench-regimes lint clean

setup: $(STAMP)

# torch first, exactly this version (a local CPU wheel on our machines), then the project.
# (setuptools' 'Editable installation' warning, that top-level folders named as packages may shadow
# imports, is our layout by design — tests/test_imports.py checks the imports — so it is not shown.)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the MLflow UI test only (nothing else needs it): Debian's package, installed
# when missing and this is root (CI runs as root); otherwise one line saying how, and the tests go on.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "make browser: chromium is missing and installing it needs root (sudo apt-get install chromium); the MLflow UI test will fail without it"; fi

# Refresh the README's screenshot: the quickstart run's lift chart in the MLflow UI (a real server, headless Chromium).
screenshot: quickstart browser
	$(BIN)/python docs/screenshot.py

# The recipe key reference, docs/recipe-keys.md, generated from the recipe schema (tests/docs/test_recipe_keys.py
# fails until it is regenerated after a change to the schema).
docs: setup
	$(BIN)/python -m transfer.config.reference docs/recipe-keys.md

quickstart: setup
	$(BIN)/gem-transfer run recipes/quickstart.yaml

# One pytest worker per core (pytest-xdist); a worker takes the next test as it finishes one, so the
# few long end-to-end tests do not leave a core idle. `PYTEST_WORKERS=0 make test` runs them in turn, in one process.
PYTEST_WORKERS ?= auto
test: setup browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

test-fast: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal -m "not slow"

bench: setup
	$(BIN)/python benchmarks/framework_overhead.py
	$(BIN)/python benchmarks/sequence_scaling.py

# The transfer ablation (synthetic benchmark world, MovieLens and the near and far domains × variants × 5 seeds),
# the staleness sweep, MovieLens-1M with knowledge from training traffic (transfer-ablation-movielens1m-best-epoch-traffic),
# then vanilla KD tuned: hours here. Each writes its current section of benchmarks/RESULTS.md
# (transfer-ablation-{synthetic,movielens,domains}-best-epoch, transfer-staleness-wide,
# transfer-ablation-synthetic-best-epoch-tuned), then the claims on the quickstart world with knowledge from training
# traffic on the benchmark world and the quickstart world, where the headroom gate passes
# (transfer-ablation-synthetic-best-epoch-traffic, -400k-traffic), and the staleness sweep
# as a lag on that knowledge (transfer-staleness-wide-400k-traffic), and the teacher's embeddings as a VM input on the
# quickstart world (transfer-embedding-features-400k: every slice, the gate reported); each writes its CSV
# under benchmarks/results/transfer/; `--only` and
# `--variants` run parts (the command quoted in each section is the one that made it).
bench-transfer: setup
	$(BIN)/python benchmarks/transfer_ablation.py
	$(BIN)/python benchmarks/transfer_ablation.py --only movielens1m --knowledge training_traffic --variants "aux KD + representation + sharing"
	$(BIN)/python benchmarks/transfer_ablation.py --only synthetic --variants "vanilla KD" --tune 10
	$(BIN)/python benchmarks/transfer_ablation.py --only synthetic --knowledge training_traffic --variants "aux KD + representation + sharing"
	$(BIN)/python benchmarks/transfer_ablation.py --only synthetic --synthetic-scale recipe --knowledge training_traffic --variants "aux KD" "aux KD + representation + sharing"
	$(BIN)/python benchmarks/transfer_ablation.py --only staleness --synthetic-scale recipe --knowledge training_traffic
	$(BIN)/python benchmarks/transfer_ablation.py --only synthetic --synthetic-scale recipe --variants "embedding features" "embedding features + vanilla KD" --ungated --section transfer-embedding-features-400k

# The headroom gate before any transfer claim: does the teacher lead the baseline VM by >= 3 NE points (95% lower
# bound >= 2, >= 5 seeds) on each claim slice? Reads the current transfer-ablation CSVs (seconds).
bench-headroom: setup
	$(BIN)/python benchmarks/headroom.py

# The regime map (regime-map-400k and its heatmap): where transfer pays and through which channel — cells around a
# centre (the VM's history 0/16/64 events, its training days 3/7/28, the teacher's lag 0/3/7 days) × vanilla KD, the
# combination, embedding features and both × 5 seeds; torch on 2 threads.
bench-regimes: setup
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/regimes.py

# Which teacher-side lever (more epochs with the best kept, knowledge from training traffic, a wide & deep teacher,
# 1,024 events of history, the larger skeleton) gives the teacher a lead over the baseline VM, gate by gate, on the
# quickstart world over 5 seeds (`--levers NAME ...` reruns some and keeps the others' rows).
bench-levers: setup
	$(BIN)/python benchmarks/headroom_levers.py

# How strong the no-transfer baseline is: a gradient-boosted tree on the VM's inputs (is the VM within 0.5 NE points
# of it?), a second tree with long-history aggregates added (what the world holds beyond the VM's inputs, and does the
# teacher reach it?) and a logistic regression on classic features, against the ablations' VMs and teacher, seed by
# seed (reads their committed CSVs, training-traffic ablations included; ~20 min).
bench-baseline: setup
	$(BIN)/python -m pip install --quiet 'lightgbm>=4,<5'  # the tree reference: a benchmark-only extra
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/strong_baseline.py

# A VM started at the logistic regression on its raw features against a random start (MovieLens, 5 seeds, ~10 min).
bench-vm-start: setup
	$(BIN)/python benchmarks/vm_wide_start.py

# Knowledge generation at 1M and 4M impressions: bounded memory, throughput vs a bare forward (~10 min).
bench-knowledge: setup
	$(BIN)/python benchmarks/knowledge_generation.py

# Memory (anonymous and proportional, over every process) and time as the log grows: the data build alone at 1M-32M
# impressions and whole quickstart runs at 1M and 4M in one process and two (DDP on CPU), on a log file, each in a fresh
# data cache; torch and polars on 1 thread a process (~1 h).
bench-scale: setup
	$(BIN)/python benchmarks/data_scale.py

# Knowledge from training traffic vs a separate generation pass: what each costs (~5 min).
bench-traffic: setup
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/traffic_knowledge.py

# The continuous transfer cycle, 4 windows on the drifting synthetic data (~6 min).
bench-cycle: setup
	$(BIN)/python benchmarks/continuous_cycle.py

# The synthetic world's own evidence (no training): speed, eval positives per slice, what a stale
# oracle loses at d = 0..7 days, what journey order and the 4-way cross are worth; 5 data seeds.
bench-world: setup
	$(BIN)/python benchmarks/synthetic_world.py

# Teacher quality (GEM vs skeleton, DCN-v2, MLP; 2 datasets × 3 seeds), the scaling curve (teacher NE against training
# FLOPs and history length, 3 seeds, production's protocol; gem_base and skeleton_small take hours here) and the
# speed options (torch.compile, bf16-mixed). Writes teacher-quality-counters-{synthetic,movielens},
# teacher-scaling and teacher-speed-options in benchmarks/RESULTS.md, the CSVs under benchmarks/results/teachers/
# (the GEM claim's sections were made with the options quoted in them: tuned, matched compute, 10 seeds).
bench-teachers: setup
	$(BIN)/python benchmarks/teacher_quality.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf gem_runs .cache .pytest_cache .ruff_cache
