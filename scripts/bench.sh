#!/bin/sh
# `make bench`: F32 prefill throughput of `qscope ppl --ctx 512 --threads 2` on
# a random-weight model of TinyLlama-1.1B's layer shape (synth --preset
# tinyllama: 4 layers, 178 M parameters, ~713 MB F32), compared in
# BENCHMARKS.md with llama.cpp's pp512 on the same shape.
#
# Runs the same command under each OPENBLAS_CORETYPE setting (as the
# environment gives it, forced to Haswell, and unset for that one command) and
# once with QS_CPU=avx2, which routes the projections to OpenBLAS instead of
# our AVX-512 GEMM. Prints one line per run; the JSON of each run is kept in
# build/bench/. The machine is shared, so the load average is printed too and
# GFLOP per CPU-second is given beside the wall-clock rate.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
OUT=${BENCH_DIR:-build/bench}
TEXT=$S/text/wikitext-2-test.txt
CHUNKS=${BENCH_CHUNKS:-4}
MODEL=$OUT/tinyllama.gguf
mkdir -p "$OUT"
if [ ! -f "$MODEL" ]; then
  echo "bench: writing $MODEL (once)"
  "$Q" synth --preset tinyllama -o "$MODEL"
fi
file_bytes=$(wc -c <"$MODEL")

field() { sed -n "s/.*\"$2\": \"*\([^,\"]*\)\"*,.*/\1/p" "$1"; }

echo "bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "bench: qscope ppl $MODEL --text $TEXT --ctx 512 --chunks $CHUNKS --threads 2 --json"
printf '%-26s %-11s %9s %9s %9s %11s %9s %9s %7s\n' run blas_core s/chunk tok/s GFLOP/s GFLOP/cpu-s rss_MB rss/file load1
run() {
  label=$1
  shift
  j=$OUT/ppl_$label.json
  "$@" "$Q" ppl "$MODEL" --text "$TEXT" --ctx 512 --chunks "$CHUNKS" --threads 2 --json >"$j" 2>/dev/null
  spc=$(field "$j" seconds_per_chunk)
  tps=$(field "$j" tokens_per_second)
  gf=$(field "$j" gflops)
  gfc=$(field "$j" gflop_per_chunk)
  ch=$(field "$j" chunks)
  cpu=$(field "$j" cpu_seconds)
  rss=$(field "$j" peak_rss_bytes)
  core=$(field "$j" blas_core)
  load=$(cut -d' ' -f1 /proc/loadavg)
  awk -v l="$label" -v c="$core" -v s="$spc" -v t="$tps" -v g="$gf" -v gc="$gfc" -v ch="$ch" -v cpu="$cpu" \
      -v r="$rss" -v f="$file_bytes" -v ld="$load" 'BEGIN {
    printf "%-26s %-11s %9.3f %9.1f %9.1f %11.1f %9.1f %9.3f %7s\n", l, c, s, t, g, gc * ch / cpu, r / 1048576, r / f, ld }'
}
run "default(env)" env
run "coretype=Haswell" env OPENBLAS_CORETYPE=Haswell
run "coretype=unset" env -u OPENBLAS_CORETYPE
run "openblas-only,Haswell" env QS_CPU=avx2 OPENBLAS_CORETYPE=Haswell
run "openblas-only,SkylakeX" env QS_CPU=avx2 OPENBLAS_CORETYPE=SkylakeX
echo "bench: llama.cpp reference (same shape, 2 threads): pp512 687 tok/s, 0.79 s per 512-token chunk"

# Other benchmark programs (tests/bench_*.c, built by `make bench`).
for b in build/tests/bench_*; do
  [ -x "$b" ] || continue
  echo "== $b"
  QS_SHARED=$S "$b" || echo "bench: $b exited with status $?"
done
