# The two commands of a fresh machine: `make demo` (the main job) and `make test` (everything).
SHELL := /bin/bash
ENV := source build/env.sh &&
PYTEST_ARGS ?=

.PHONY: setup test soak demo demo-world bench lint clean

setup:
	bash tools/setup.sh

test: setup
	$(ENV) bash tools/run_tests.sh $(PYTEST_ARGS)

# 200 goals against the node with the world weights (README "Failure behaviour"); over 5 minutes, so not in `test`.
soak: setup
	$(ENV) export ROS_LOCALHOST_ONLY=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	  ROS_DOMAIN_ID=$$(( (RANDOM % 100) + 100 )) && python -m pytest promptbox_ros/test/test_ros_soak.py -m slow -s -ra

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
