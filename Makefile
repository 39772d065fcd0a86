# The only commands a person needs. CMake and CTest do the work underneath:
#   make          build everything into build/ (programs in build/bin/)
#   make test     everything CI runs: unit tests plain and under ASan/UBSan,
#                 interop tests, and a short run of every fuzz target
#   make run      start starlingd on its development defaults
#   make fuzz     run every fuzz target for FUZZ_TIME seconds (default 600)
#   make bench    print starlingd's figures (bench/; not a test)
#   make format   apply .clang-format (make test checks it)
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD := build
ASAN_BUILD := build-asan
FUZZ_BUILD := build-fuzz
FUZZ_TIME ?= 600
CMAKE_GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps build asan fuzz-build test unit run fuzz bench format format-check clean

all: build

deps:
	@scripts/deps

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSTARLING_FUZZ_BUILD_DIR=$(CURDIR)/$(FUZZ_BUILD) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug \
	    -DSTARLING_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_C_COMPILER=clang -DSTARLING_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

# The sanitizer pass runs first; the plain pass runs last so that CTest's
# summary line of the full run closes the output.
test: format-check build asan fuzz-build
	@echo "== unit and integration tests under ASan/UBSan ($(ASAN_BUILD)) =="
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE 'interop|fuzz'
	@echo "== all tests, plain build ($(BUILD)), with fuzz smoke runs =="
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

run: build
	@$(BUILD)/bin/starlingd --dev

fuzz: fuzz-build
	@for t in $(FUZZ_BUILD)/bin/fuzz_*; do \
	    scripts/fuzz-run "$$t" $(FUZZ_TIME) || exit 1; done

bench: build
	@/usr/bin/python3 bench/c2s_idle.py --sessions $${SESSIONS:-500} \
	    --messages $${MESSAGES:-20000} $(BUILD)/bin/starlingd $(BUILD)/bin/starlingctl
	@/usr/bin/python3 bench/presence_fanout.py --contacts $${CONTACTS:-100,1000} \
	    $(BUILD)/bin/starlingd $(BUILD)/bin/starlingctl
	@/usr/bin/python3 bench/tls_resume.py --logins $${LOGINS:-1000} \
	    $(BUILD)/bin/starlingd $(BUILD)/bin/starlingctl
	@$(BUILD)/bin/archive_bench $${ARCHIVE:-1000000}
	@/usr/bin/python3 bench/message_archive.py --messages $${ARCHIVED:-5000} \
	    $(BUILD)/bin/starlingd $(BUILD)/bin/starlingctl

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') || \
	    { echo "C sources are not formatted: run 'make format'"; exit 1; }

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
