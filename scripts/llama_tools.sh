#!/bin/sh
# llama_tools.sh SHARED OUT — llama.cpp's tools (the oracle some tests run) in OUT/bin, built once
# from SHARED/llama.cpp and checked to RUN on this CPU.
#
# SHARED/llama.cpp/build.sh configures for AVX-512 (VNNI, BF16). On a CPU without AVX-512 its
# binaries die with SIGILL at start-up, and every oracle test would then fail instead of comparing
# or skipping. So: after build.sh, run llama-perplexity --help; if it is killed by a signal,
# configure the same source again, out of tree in OUT, for the instruction set this CPU has
# (AVX2+FMA+F16C, else none of those), and build the same five tools. If even that build cannot run
# here, OUT/bin is renamed OUT/bin-unrunnable so the oracle tests skip with their note.
# Only llama.cpp's own sources and CMake options are used; nothing of it is linked or copied.
set -u
shared=${1:?usage: llama_tools.sh SHARED OUT}
out=${2:?usage: llama_tools.sh SHARED OUT}
src=$shared/llama.cpp
tools="llama-perplexity llama-quantize llama-imatrix llama-bench llama-tokenize"

runs() {  # the tools start on this CPU (exit status below 128: not killed by SIGILL)
  [ -x "$out/bin/llama-perplexity" ] && [ -x "$out/bin/llama-quantize" ] || return 1
  "$out/bin/llama-perplexity" --help >/dev/null 2>&1
  [ $? -lt 128 ]
}

if runs; then exit 0; fi
if [ ! -x "$src/build.sh" ]; then
  echo "note: $src is absent: llama.cpp oracle tests will skip"; exit 0
fi
if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
  echo "note: cmake or g++ missing (apt-get install cmake g++): llama.cpp oracle tests will skip"; exit 0
fi
if [ ! -x "$out/bin/llama-perplexity" ]; then
  echo "building llama.cpp's tools into $out (once, ~10 min on 2 cores)"
  "$src/build.sh" "$out" || exit 1
  if runs; then exit 0; fi
fi

# build.sh's AVX-512 binaries do not start here: the instruction set this CPU reports instead
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
has() { case " $flags " in *" $1 "*) return 0;; esac; return 1; }
if has avx2 && has fma && has f16c; then
  isa="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"; level="AVX2+FMA+F16C"
else
  isa="-DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"; level="SSE only"
fi
echo "note: llama.cpp's tools built by build.sh (AVX-512) do not start on this CPU (illegal instruction):"
echo "      configuring them again in $out for $level (~10 min on 2 cores)"
# shellcheck disable=SC2086
if ! cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $isa \
     -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
     -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
     -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF \
     -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF \
     >"$out/configure-fallback.log" 2>&1; then
  echo "llama.cpp configure for $level failed (log: $out/configure-fallback.log)" >&2; exit 1
fi
# shellcheck disable=SC2086
if ! cmake --build "$out" -j"$(nproc)" --target $tools >"$out/build-fallback.log" 2>&1; then
  tail -20 "$out/build-fallback.log"; echo "llama.cpp build for $level failed (log: $out/build-fallback.log)" >&2
  exit 1
fi
if runs; then echo "llama.cpp tools in $out/bin ($level)"; exit 0; fi
rm -rf "$out/bin-unrunnable"; mv "$out/bin" "$out/bin-unrunnable"
echo "note: llama.cpp's tools do not start on this CPU even at $level: llama.cpp oracle tests will skip"
exit 0
