# The two commands of the README: `make demo` runs the main job, `make test` everything else.
.PHONY: demo test test-slow bench lint docs clean

demo:  ## the example retention DAG (dry run, then for real) against the bundled emulator
	scripts/demo.sh

test:  ## lint, types, docs and the test suite on Airflow 3.3 and 2.11 (what CI runs)
	scripts/test.sh

test-slow:  ## the exhaustive variants (hypothesis, fault matrix, a million recordings) on both versions
	scripts/test.sh -m slow

bench:  ## benchmarks against PostHog's limits, as ratios to baselines measured in the same run
	scripts/bench.sh

lint:
	.venvs/airflow-3.3/bin/ruff check . && .venvs/airflow-3.3/bin/ruff format --check . && .venvs/airflow-3.3/bin/mypy

docs:  ## build the documentation site into site/
	"$$(scripts/bootstrap.sh docs)/bin/mkdocs" build --strict

clean:
	rm -rf .venvs site .demo benchmarks/results
