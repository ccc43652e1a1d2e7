# flotilla: the two commands a new user needs are `make cluster` and `make test`.
SHELL := /bin/bash
NODE_MODULES_STAMP := node_modules/.installed

.PHONY: all install build typecheck test test-unit test-sim test-cluster cluster clean bench chaos sim-long

all: build

# npm ci on a fresh clone (or when the lock file changed).
$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES_STAMP)

build: $(NODE_MODULES_STAMP)
	npx tsc -p tsconfig.build.json

typecheck: $(NODE_MODULES_STAMP)
	npx tsc -p tsconfig.json --noEmit

# The whole suite: type check; unit and simulation (>= 2,000 seeds) on both cores; then the
# tiers that start real member processes one file at a time, so their timing is not starved.
test: build typecheck
	npx vitest run test/unit test/sim
	npx vitest run --no-file-parallelism test/cluster test/client test/chaos

test-unit: build
	npx vitest run test/unit

test-sim: build
	npx vitest run test/sim

test-cluster: build
	npx vitest run --no-file-parallelism test/cluster test/client

# A local 3-member cluster on the contract's ports, data under ./data; Ctrl-C stops it.
cluster: build
	node bin/flotilla.js dev-cluster --data-dir ./data

clean:
	rm -rf dist data coverage .bench-tmp

# A long seeded sweep of the Raft simulator (100,000 seeds on both cores, ~30 min);
# FLOTILLA_SEEDS / FLOTILLA_SEED_START change the sweep, a failure prints its replay command.
sim-long: build
	npx tsc -p test/sim/tsconfig.build.json
	FLOTILLA_SEEDS=$${FLOTILLA_SEEDS:-100000} node test-results/sim-build/test/sim/sweep.js

# flotilla beside etcd 3.4 (installed from Debian when missing) under wrk, plus the Raft core
# micro-benchmark, and flotilla alone over time (rejoin by snapshot, a member joining 1,000,000 keys,
# disk use over a 10-minute write run); writes docs/benchmarks.md and docs/bench-*.svg (35-45 min).
# BENCH_FLAGS=--quick: a few minutes; BENCH_FLAGS=--only=rejoin,disk: those parts, the rest kept.
bench: build
	node test/bench/run-bench.mjs $(BENCH_FLAGS)

chaos: build
	FLOTILLA_CHAOS=long npx vitest run test/chaos
