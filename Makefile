PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
# Extra flags for train / reproduce, e.g. make train ARGS="--overwrite --merge_ratio 0.5"
ARGS ?=

.PHONY: install test test-fast test-slow lint format train recipe recipe-gemma recipe-gemma-full reproduce research research-languages \
	research-mixing research-strategies research-efficiency research-size bench clean

install:  ## create .venv and install st-hybrid with its dev tools (torch CPU wheel first)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"

test:  ## the full suite (fast tests plus the slow end-to-end runs), as CI runs it
	$(PY) -m pytest -q

test-fast:  ## the fast suite only
	$(PY) -m pytest -q -m "not slow"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

train:  ## the main job: fine-tune multilingual-e5-small on MLQA-R, evaluate on XQuAD-R (offline); again: ARGS=--overwrite
	BASE_MODEL=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(VENV)/bin/accelerate launch --num_processes 1 --cpu examples/train.py --config examples/configs/default.yaml --model $$BASE_MODEL $(ARGS)

recipe:  ## the CPU recipe: 500 cross-lingual steps x 32 on MLQA-R + 1 mined hard negative + 1 parallel positive (the worse-scored one trains), merged with the base at r=0.5, full XQuAD-R (~45 min training + ~20 min mining and evaluation)
	BASE_MODEL=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(VENV)/bin/accelerate launch --num_processes 1 --cpu examples/train.py --config examples/configs/recipe_cpu.yaml --model $$BASE_MODEL $(ARGS)

# The moonshot of issue 10: the recipe on embeddinggemma-300m (1.15 GB download the first time). Training evaluates
# on a SUBSET (4 XQuAD-R articles per language) the fine-tuned model and its merge at the config's merge_ratio (0.5,
# saved as model-merged/); the other ratios are swept on the same subset from the saved weights, no retraining.
GEMMA_MERGE_RATIOS ?= 0.1 0.2 0.3
GEMMA_OUT ?= outputs/recipe_gemma_cpu
recipe-gemma:  ## moonshot: 170 cross-lingual steps x 32 on embeddinggemma-300m, 1 hard negative mined by e5-small (~45-55 min) + merge sweep on a subset (~8 min)
	GEMMA=$$($(SHARED)/tools/offline-model $(PY) embeddinggemma-300m) && \
	E5=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(VENV)/bin/accelerate launch --num_processes 1 --cpu examples/train.py --config examples/configs/recipe_gemma_cpu.yaml --model $$GEMMA \
		--hard_negatives_model $$E5 --output_dir $(GEMMA_OUT) $(ARGS) && \
	$(PY) examples/evaluate_model.py --model $(GEMMA_OUT)/model --merge-base $$GEMMA \
		--merge-ratios $(GEMMA_MERGE_RATIOS) --max-articles 4 --batch-size 32 --output $(GEMMA_OUT)/merge_sweep_subset4

recipe-gemma-full:  ## the moonshot's saved merge (model-merged/, r = 0.5: the subset sweep's pick) on the full XQuAD-R (~25 min)
	$(PY) examples/evaluate_model.py --model $(GEMMA_OUT)/model-merged --batch-size 32 --output $(GEMMA_OUT)/merged_full

reproduce:  ## mono / cross / hybrid / mixed comparison at CPU scale, 3 seeds, merged with the base at r=0.5
	BASE_MODEL=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(PY) examples/reproduce.py --config examples/configs/reproduce_cpu.yaml --model $$BASE_MODEL $(ARGS)

# Research questions (docs/research/): one command each, resumable (cached per run), CPU budgets in each config.
research-languages:  ## Q: training languages 2 -> 113, pool growth, language weighting (~23 min) -> docs/research/languages.md
	BASE_MODEL=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(PY) examples/research/languages.py --config examples/configs/research_languages_cpu.yaml --model $$BASE_MODEL $(ARGS)

research-mixing:  ## Q: hybrid vs in-batch mixing across alpha, 3 seeds (27 runs, ~31 min on 2 cores) -> docs/research/mixing.md
	$(PY) examples/research/mixing.py --config examples/configs/research_mixing_cpu.yaml $(ARGS)

research-strategies: research-mixing  ## Q (issue 10): mono/cross/hybrid/mixed at their best merge ratio, no new training (36 merge evaluations, ~20 min) -> docs/research/strategies.md
	$(PY) examples/research/mixing.py --config examples/configs/research_strategies_cpu.yaml $(ARGS)

research-efficiency:  ## Q: serving: shared vs per-language indexes, compression, backends (~35 min) -> docs/research/efficiency.md
	BASE_MODEL=$$($(SHARED)/tools/offline-model $(PY)) && \
	$(PY) examples/research/efficiency.py --config examples/configs/research_efficiency_cpu.yaml --model $$BASE_MODEL $(ARGS)

research-size:  ## Q: size ladder 18M -> 118M -> 308M, zero-shot + hybrid/mono/cross (~17 min) -> docs/research/size.md
	$(PY) examples/research/size.py --config examples/configs/research_size_cpu.yaml $(ARGS)

research: research-languages research-mixing research-efficiency research-size  ## all four, one after another

bench:
	$(PY) benchmarks/sampler.py
	$(PY) benchmarks/evaluator.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
