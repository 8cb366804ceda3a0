# The two commands of the README. Both set up first (idempotent).
.PHONY: setup demo test test-fast lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/tkds demo --out demo

test: lint
	@TKDS_EXTRAS=dev,ray bash scripts/setup.sh
	.venv/bin/pytest

test-fast: setup lint
	.venv/bin/pytest -m "not slow"

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	.venv/bin/python benchmarks/synth.py
	.venv/bin/python benchmarks/twin.py
	.venv/bin/python benchmarks/collect.py
	.venv/bin/python benchmarks/shards.py
	.venv/bin/python benchmarks/loader.py
	.venv/bin/python benchmarks/train.py
	.venv/bin/python benchmarks/serve.py
	.venv/bin/python benchmarks/bench.py
