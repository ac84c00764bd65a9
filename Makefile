# The two commands a fresh machine needs (see README):
#   make run    install what is missing, build, and run the gateway on its embedded defaults
#   make test   install what is missing and run the tests
SWIFT ?= swift
ARGS ?= serve

.PHONY: run test smoke build deps test-deps samples bench cluster clean

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

build: deps
	$(SWIFT) build

run: build
	.build/debug/mediagate $(ARGS)

# PostgreSQL, SeaweedFS (S3), three nodes and nginx round-robin on 127.0.0.1:8000 (scripts/cluster.py);
# CLUSTER_ARGS=--check runs a message through every node and stops.
cluster: build
	scripts/install-deps.sh --cluster
	scripts/cluster.py $(CLUSTER_ARGS)

# The tests take about two minutes once built (then the web client in Chromium, Tests/Browser); a hung one fails the run after 15 minutes
# instead of holding CI until its own limit, and scripts/watchdog.sh prints where every
# thread was. The tests that time the server under attack run on their own afterwards: beside
# the rest (PostgreSQL, a 294 MB decode) two cores are too busy for their bounds to mean anything.
TIMED = HostileLoadTests|HostileConnectionTests
test: test-deps
	$(SWIFT) build --build-tests
	scripts/watchdog.sh 900 $(SWIFT) test --skip-build --skip '$(TIMED)'
	scripts/watchdog.sh 600 $(SWIFT) test --skip-build --filter '$(TIMED)'
	timeout 15m python3 -m pytest -q -p no:cacheprovider -m 'not release' Tests/Browser


# The release binary, which is what users run: every sample probed, the server answering an
# upload (scripts/release-smoke.py), the web client's page-load time in Chromium, and schemathesis fuzzing every operation of
# Docs/openapi.yaml against it (Tests/Fuzz), then three nodes on PostgreSQL and S3 behind nginx
# (scripts/cluster.py --check). CI runs it after the tests.
smoke: test-deps
	$(SWIFT) build -c release --product mediagate
	scripts/release-smoke.py .build/release/mediagate
	MEDIAGATE_BIN=.build/release/mediagate timeout 10m python3 -m pytest -q -p no:cacheprovider -m release Tests/Browser
	MEDIAGATE_BIN=.build/release/mediagate timeout 15m python3 -m pytest -q -p no:cacheprovider Tests/Fuzz
	scripts/install-deps.sh --cluster
	timeout 5m scripts/cluster.py --binary .build/release/mediagate --port 18000 --check

samples:
	scripts/install-deps.sh --test
	scripts/make-samples.sh

bench:
	scripts/install-deps.sh --bench
	Benchmarks/pipeline.sh
	swift build -c release --product mediagate
	Benchmarks/chat-fanout.py
	Benchmarks/upload-throughput.py
	Benchmarks/thumbnails.py
	Benchmarks/s3-serving.py
	Benchmarks/s3-upload.py
	Benchmarks/cluster-thumbnails.py
	Benchmarks/batch-upload.py
	Benchmarks/soak.py

clean:
	rm -rf .build
