# llama-perplexity as the oracle of the end-to-end scripts (sourced, not run:
# the Makefile runs tests/e2e_*.sh only). The sourcing script has tmp (its
# temporary directory, removed on exit) and fail (its error exit). Sets LB,
# the directory of llama.cpp's tools.
LB=${LLAMA_BIN:-build/llama.cpp/bin}

# llama_ppl MODEL TEXT THREADS: llama-perplexity's final PPL of MODEL on TEXT
# (-c 128, float32 attention and KV cache) on stdout. llama.cpp's logger
# thread is not joined at exit (common/log.cpp, "logs may be lost if not
# flushed before the program exits"): on a loaded machine the last lines
# ("Final estimate") were missing from most exit-0 runs. A preloaded
# destructor that waits 0.3 s lets the thread finish (built once into $tmp,
# left out when no compiler is at hand); up to four runs as well.
llama_ppl() {
  if [ ! -f "$tmp/delay.so" ]; then
    printf '#include <unistd.h>\n__attribute__((destructor)) static void wait_for_log(void) { usleep(300000); }\n' \
      >"$tmp/delay.c"
    ${CC:-cc} -shared -fPIC -o "$tmp/delay.so" "$tmp/delay.c" 2>/dev/null || rm -f "$tmp/delay.so"
  fi
  delay=
  [ -f "$tmp/delay.so" ] && delay=$tmp/delay.so
  for try in 1 2 3 4; do
    LD_PRELOAD=$delay "$LB/llama-perplexity" -m "$1" -f "$2" -c 128 -b 128 -t "$3" -fa off -ctk f32 -ctv f32 \
      >"$tmp/lp.log" 2>&1 || fail "llama-perplexity on $1"
    v=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/lp.log")
    [ -n "$v" ] && { echo "$v"; return; }
  done
  fail "no PPL in llama-perplexity's output: $(tail -3 "$tmp/lp.log")"
}
