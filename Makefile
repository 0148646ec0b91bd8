# Khiên: a thin driver over CMake + CTest. The two commands a new user needs:
#   make run    build everything, make a demo folder with planted detections, scan it
#   make test   unit, compatibility and fuzz-smoke tests, then the same tests under ASan+UBSan
# Both install the Debian packages they need first (scripts/install-deps).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 10
CMAKE_FLAGS ?=

.PHONY: all build deps run test test-fast test-asan fuzz-smoke format clean help

all: build

help:
	@echo "make run        build, generate a demo folder and scan it"
	@echo "make test       all tests (normal build, ASan+UBSan build, fuzz smoke)"
	@echo "make test-fast  unit and case tests on the normal build only"
	@echo "make fuzz-smoke run every libFuzzer target for $(FUZZ_SECONDS) s"
	@echo "make bench     scanner benchmark against clamscan and yara"
	@echo "make bench-server  10,000 simulated agents against the server (SQLite, PostgreSQL)"
	@echo "make bench-agent   the agent's idle memory/CPU beside clamd's, and real-time overhead (root)"
	@echo "make bench-sensor  the network sensor beside ndpiReader and tshark (1 M packets, 10 M indicators)"
	@echo "make bench-report  the quarterly report for 500 agencies and 10,000 machines (SQLite, PostgreSQL)"
	@echo "make format     clang-format every C file"

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-demo $(BUILD)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKHIEN_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

fuzz-smoke: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKHIEN_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@scripts/fuzz-smoke $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS)

# Everything, with one summary line at the end (CI reads it).
test: deps
	@scripts/run-tests "$(BUILD)" "$(ASAN_BUILD)" "$(FUZZ_BUILD)" "$(JOBS)" "$(FUZZ_SECONDS)"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# Side-by-side benchmark against clamscan and yara; not part of `make test`.
# BENCH_SCALE is small, medium or full (default); see bench/run for the rest.
BENCH_SCALE ?= full
.PHONY: bench
bench: build
	BENCH_BUILD=$(abspath $(BUILD)) bench/run $(BENCH_SCALE)

# Simulated agents against the server on SQLite and PostgreSQL; not part of `make test`.
.PHONY: bench-server
bench-server: build
	BENCH_BUILD=$(abspath $(BUILD)) bench/server/run $(BENCH_BACKEND)

# The endpoint agent beside clamd (needs root); not part of `make test`.
.PHONY: bench-agent
bench-agent: build
	BENCH_BUILD=$(abspath $(BUILD)) bench/agent/run $(BENCH_SCALE)

# The network sensor beside ndpiReader, tshark as the oracle (issue 6).
.PHONY: bench-sensor
bench-sensor: build
	BENCH_BUILD=$(abspath $(BUILD)) bench/sensor/run $(BENCH_SENSOR_SCALE)

# The quarterly report at the issue's scale, on SQLite and (when PostgreSQL's
# server is installed) on a throwaway PostgreSQL.
.PHONY: bench-report
bench-report: build
	$(BUILD)/bench/report_bench
	@pg=$$(mktemp -d); chmod 755 $$pg; \
	if url=$$(scripts/pg-throwaway start $$pg/db); then \
	  $(BUILD)/bench/report_bench $$url; rc=$$?; scripts/pg-throwaway stop $$pg/db; \
	else echo "bench-report: PostgreSQL skipped (it could not be started; see above)"; rc=0; fi; \
	rm -rf $$pg; exit $$rc
