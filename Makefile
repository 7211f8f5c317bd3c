# The two commands of the README: `make demo` runs the main job, `make test` everything else.
.PHONY: help demo test test-unit test-slow bench lint docs clean

help:  ## list the targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9_-]+:[^#]*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo:  ## the example retention DAG (dry run, then for real), sharing audit, erasure and sensor against the bundled emulator
	scripts/demo.sh

test:  ## lint, types, docs and the test suite on Airflow 3.3 and 2.11 (what CI runs)
	scripts/test.sh

# The quick check while working (about two and a half minutes on two cores): Airflow 3.3 only, and
# it leaves out the `airflow dags test` runs (tests/integration), the deployment
# (tests/system) and the tests marked heavy (pyproject.toml): those that start the S3
# server or worker processes, archive 300 MB, or wait seconds of real time. `make test`
# runs all of them. PYTEST_ARGS="-k retention" narrows it; PYTEST_ARGS="-m heavy" runs
# the heavy ones instead (a later -m replaces this one).
test-unit:  ## the quick check: Airflow 3.3 only, no integration, system or heavy tests (S3 server, worker processes, real-time waits)
	@af3="$$(scripts/bootstrap.sh airflow-3.3)" && \
	eval "$$(scripts/services.sh | sed 's/^/export /')" && \
	home="$$(mktemp -d /tmp/airflow-home-unit-XXXX)" && \
	AIRFLOW_HOME="$$home" PROVIDER_TEST_ENV=airflow-3.3 "$$af3/bin/python" -m pytest tests \
		--ignore=tests/integration --ignore=tests/system -m "not slow and not heavy" $(PYTEST_ARGS); \
	status=$$?; rm -rf "$$home"; exit $$status

test-slow:  ## the exhaustive variants (hypothesis, fault matrix, a million recordings) on both versions
	scripts/test.sh -m slow

bench:  ## benchmarks against PostHog's limits, as ratios to baselines measured in the same run
	scripts/bench.sh

lint:  ## ruff and mypy
	.venvs/airflow-3.3/bin/ruff check . && .venvs/airflow-3.3/bin/ruff format --check . && .venvs/airflow-3.3/bin/mypy

docs:  ## build the documentation site into site/
	"$$(scripts/bootstrap.sh docs)/bin/mkdocs" build --strict

clean:  ## remove the environments, the built site and generated results
	rm -rf .venvs site .demo benchmarks/results
