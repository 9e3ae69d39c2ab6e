.PHONY: setup demo test lint results
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint: setup
	.venv/bin/ruff check src tests benchmarks examples
results:
	bash scripts/results.sh
