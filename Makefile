# make run   - set up (first time) and run the main job on the embedded default
# make test  - set up (first time) and run lint and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

run: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/prednas run

lint: $(STAMP)
	$(BIN)/ruff check prednas components pipelines tests

test: $(STAMP) lint
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .prednas
