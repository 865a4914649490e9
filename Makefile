# The two commands of a fresh machine: `make demo` (the main job) and `make test` (everything).
SHELL := /bin/bash
ENV := source build/env.sh &&
PYTEST_ARGS ?=

.PHONY: setup test demo demo-world bench lint clean

setup:
	bash tools/setup.sh

test: setup
	$(ENV) bash tools/run_tests.sh $(PYTEST_ARGS)

demo: setup
	$(ENV) bash tools/demo.sh

demo-world: setup
	$(ENV) bash tools/demo_world.sh

bench: setup
	$(ENV) promptbox bench $(BENCH_ARGS)

lint: setup
	$(ENV) ruff check .

clean:
	rm -rf build install
