# routerlab: `make demo` and `make test` are all a user types on a fresh machine (as root).
VENV := .venv
RL := $(VENV)/bin/routerlab
PY := $(VENV)/bin/python
OUT ?= results

.PHONY: setup demo test test-unit lint bench clean doctor

setup:
	./scripts/setup.sh

demo: setup
	$(RL) run all --out $(OUT)

test: setup
	./scripts/lint.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	./scripts/lint.sh

test-unit: setup
	$(PY) -m pytest -m "not emulation" $(PYTEST_ARGS)

bench: setup
	$(RL) bench te --out $(OUT)/bench-te

doctor: setup
	$(RL) doctor

clean:
	@if [ -x $(RL) ]; then $(RL) clean; fi
