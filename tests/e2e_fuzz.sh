#!/bin/sh
# A short pass (1 s each) of every libFuzzer harness (tests/fuzz/run.sh) on
# seeds generated from qscope's own outputs; `make fuzz` runs them longer.
# Skips with a note when the harnesses were not built (no clang libFuzzer).
set -eu
for n in gguf safetensors tokenizer plan session stats qsq; do
  if [ ! -x build-fuzz/fuzz_$n ]; then
    echo "e2e_fuzz: note: build-fuzz/fuzz_$n not built (clang's libFuzzer missing?): skipped"
    exit 0
  fi
done
sh tests/fuzz/run.sh 1 || { echo "e2e_fuzz: a harness failed" >&2; exit 1; }
echo "e2e_fuzz: ok"
