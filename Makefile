# qscope — see README.md. `make` builds ./qscope, `make run` opens the TUI on
# the default model, `make test` runs every test program, `make bench`
# the benchmarks, `make asan` an ASan/UBSan build of everything plus the tests.

CC      ?= cc
SHARED  ?= ../shared
BUILD   ?= build
# `make MPI=1` builds ./qscope-mpi against OpenMPI (mpicc, objects in
# build-mpi/): the same commands, with ppl/eval/calib/quant spread over the
# ranks of `mpirun -np N ./qscope-mpi ...` (core/dist.h). The default build
# has no MPI dependency.
ifneq ($(MPI),)
CC       = mpicc
BUILD    = build-mpi
MPI_DEFS = -DQS_MPI
PROG     = qscope-mpi
else
PROG     = qscope
endif
OPT     ?= -O2
PKGS     = ncursesw openblas libcjson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(strip $(PKG_LIBS)),)
PKG_CFLAGS = -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/cjson
PKG_LIBS   = -lncursesw -ltinfo -lopenblas -lcjson
endif
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-format-truncation
ifneq ($(CI),)
WARN    += -Werror
endif
CFLAGS  += -std=c11 $(OPT) -g -D_GNU_SOURCE -pthread -I. $(PKG_CFLAGS) $(WARN) $(MPI_DEFS) $(EXTRA_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

LIB_DIRS = core kernels quant model analysis sessions tui cli
LIB_SRC  = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SH  = $(wildcard tests/e2e_*.sh)
BENCH_SRC = $(wildcard tests/bench_*.c)
BENCH_BIN = $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)

# Default model: the shared copy of stories260K, else a one-time download.
ifneq ($(wildcard $(SHARED)/models/stories260K/stories260K-f32.gguf),)
MODEL ?= $(SHARED)/models/stories260K/stories260K-f32.gguf
MODEL_DEP =
else
MODEL ?= models/stories260K.bin --tokenizer models/tok512.bin
MODEL_DEP = models/stories260K.bin
endif

.PHONY: all deps run test test-unit test-e2e bench asan clean llama-tools mpi-build
all: deps $(PROG)

deps:
	@./scripts/deps.sh

$(PROG): $(BUILD)/main.o $(BUILD)/libqscope.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/libqscope.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libqscope.a tests/testlib.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libqscope.a $(LDFLAGS) $(LDLIBS)

models/stories260K.bin:
	./scripts/fetch_model.sh models

run: all $(MODEL_DEP)
	./qscope $(MODEL)

# llama.cpp's tools, the oracle some tests run on files qscope reads and writes:
# built once from $(SHARED)/llama.cpp with its build.sh into $(LLAMA_OUT) (about
# 10 minutes on 2 cores), reused after that, and checked to start on this CPU
# (build.sh targets AVX-512; scripts/llama_tools.sh configures them again for the
# CPU's own level when they die of SIGILL). A LLAMA_BIN given from outside
# (a build elsewhere) is used as it is. Without the source copy or without
# cmake/g++ the oracle tests skip with a note; a build that fails stops `make test`.
LLAMA_OUT ?= build/llama.cpp
LLAMA_BIN_GIVEN := $(LLAMA_BIN)
LLAMA_BIN ?= $(abspath $(LLAMA_OUT))/bin
export LLAMA_BIN
llama-tools:
	@if [ -n "$(LLAMA_BIN_GIVEN)" ]; then :; \
	else sh scripts/llama_tools.sh $(SHARED) $(LLAMA_OUT); fi

# The MPI build for tests/e2e_mpi.sh, when OpenMPI's compiler is installed
# (Debian: libopenmpi-dev openmpi-bin); the script skips with a note otherwise.
mpi-build:
	@if [ -z "$(MPI)" ] && command -v mpicc >/dev/null 2>&1; then $(MAKE) --no-print-directory MPI=1 qscope-mpi; \
	elif [ -z "$(MPI)" ]; then echo "note: mpicc not found: the MPI tests will skip"; fi

# Every test program, then the end-to-end scripts; stops at the first failure.
test: all $(TEST_BIN) $(MODEL_DEP) llama-tools mpi-build fuzz-build
	@set -e; pass=0; fail=0; \
	for t in $(TEST_BIN); do \
	  echo "== $$t"; \
	  if QS_SHARED=$(SHARED) $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; echo "$$pass passed, $$fail failed"; exit 1; fi; \
	done; \
	for s in $(TEST_SH); do \
	  echo "== $$s"; \
	  if QS_SHARED=$(SHARED) QSCOPE=./qscope sh $$s; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$s"; echo "$$pass passed, $$fail failed"; exit 1; fi; \
	done; \
	echo "$$pass passed, $$fail failed"

bench: all $(BENCH_BIN) mpi-build
	./scripts/bench.sh

# float-cast-overflow is not part of GCC's "undefined" group, yet float -> int
# casts are what every quantizer does; out-of-range ones are UB.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined,float-cast-overflow" test-asan

# Sanitizer reports also go to files under $(SAN_LOG): an e2e script that
# expects a command to fail, or discards its stderr, would otherwise pass over
# an ASan/UBSan/LSan report; any report file fails the run and is printed.
# scripts/lsan.supp lists leaks inside system libraries only (see its comments).
SAN_LOG = $(abspath $(BUILD))/sanitizer
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:log_path=$(SAN_LOG)/asan \
	  LSAN_OPTIONS=suppressions=$(abspath scripts/lsan.supp):print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOG)/ubsan
# e2e_mpi.sh runs the MPI build test-asan makes itself, with the same
# sanitizer flags (objects in $(BUILD)-mpi/), never a ./qscope-mpi the tree
# happens to hold; without mpicc there is none and the script skips.
ASAN_MPI = $(BUILD)-mpi/qscope-mpi
test-asan: $(BUILD)/libqscope.a $(TEST_BIN) $(BUILD)/main.o
	$(CC) $(CFLAGS) -o $(BUILD)/qscope $(BUILD)/main.o $(BUILD)/libqscope.a $(LDFLAGS) $(LDLIBS)
	@if command -v mpicc >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory MPI=1 BUILD=$(BUILD)-mpi PROG=$(ASAN_MPI) $(ASAN_MPI) || exit 1; \
	else rm -f $(ASAN_MPI); echo "note: mpicc not found: the MPI tests will skip"; fi
	@rm -rf $(SAN_LOG); mkdir -p $(SAN_LOG); \
	reports() { if ls $(SAN_LOG)/* >/dev/null 2>&1; then cat $(SAN_LOG)/*; \
	  echo "asan: sanitizer reports above (also in $(SAN_LOG))"; return 0; fi; return 1; }; \
	for t in $(TEST_BIN); do echo "== $$t (asan)"; \
	  $(SAN_ENV) QS_SHARED=$(SHARED) QS_ASAN=1 $$t || { reports; echo "FAILED: $$t"; exit 1; }; \
	  if reports; then echo "FAILED: $$t"; exit 1; fi; done; \
	for s in $(TEST_SH); do echo "== $$s (asan)"; \
	  $(SAN_ENV) QS_SHARED=$(SHARED) QS_ASAN=1 QSCOPE=$(BUILD)/qscope QSCOPE_MPI=$(ASAN_MPI) sh $$s || { reports; echo "FAILED: $$s"; exit 1; }; \
	  if reports; then echo "FAILED: $$s"; exit 1; fi; done; echo "asan: all passed"

clean:
	rm -rf $(BUILD) build-asan build-asan-mpi build-mpi build-fuzz qscope qscope-mpi

-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d

# === sessions ===
# The build version each evaluation result records (git describe at build time).
QS_VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/sessions/session.o: CFLAGS += -DQS_BUILD_VERSION='"$(QS_VERSION)"'

# A longer seeded mutation fuzz of the session, plan-JSON and llama.cpp
# tensor-type parsers under ASan/UBSan (test_session's loop, FUZZ_SECONDS long).
FUZZ_SECONDS ?= 120
.PHONY: fuzz
fuzz:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" build-asan/tests/test_session
	QS_SHARED=$(SHARED) QS_FUZZ_SECONDS=$(FUZZ_SECONDS) build-asan/tests/test_session
	$(MAKE) --no-print-directory fuzz-bins
	QS_SHARED=$(SHARED) sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# libFuzzer harnesses (tests/fuzz/fuzz_readers.c), one binary per reader, over
# a clang build of the library with ASan/UBSan in build-fuzz/. `make fuzz` runs
# each FUZZ_SECONDS; `make test` runs each for a second (tests/e2e_fuzz.sh)
# when clang's libFuzzer is installed, and says so when it is not.
FUZZ_CC    ?= clang
FUZZ_NAMES  = gguf safetensors tokenizer plan session stats qsq
FUZZ_SAN    = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -std=c11 -O1 -g -fno-omit-frame-pointer -D_GNU_SOURCE -pthread -I. $(PKG_CFLAGS)
.PHONY: fuzz-bins fuzz-build
fuzz-bins:
	@$(MAKE) --no-print-directory CI= CC=$(FUZZ_CC) MPI= BUILD=build-fuzz OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN) -Wno-unknown-warning-option" build-fuzz/libqscope.a
	@for n in $(FUZZ_NAMES); do \
	  N=$$(echo $$n | tr a-z A-Z); \
	  $(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -DFUZZ_$$N -o build-fuzz/fuzz_$$n \
	    tests/fuzz/fuzz_readers.c build-fuzz/libqscope.a $(LDLIBS) || exit 1; done
fuzz-build:
	@if printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' | \
	  $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then $(MAKE) --no-print-directory fuzz-bins; \
	else echo "note: $(FUZZ_CC) with libFuzzer not found: the fuzz smoke test will skip"; fi
