#!/bin/sh
# The MPI build (make MPI=1 -> ./qscope-mpi) end to end on loopback: ppl and
# eval spread over 2 ranks give exactly the single-process values (chunk i
# runs on rank i % 2, sums are formed in the single-process order), calib
# over 2 and 3 ranks writes the single-process stats file and H, quant writes
# the same .qsq bytes (sites shared out, gathered on rank 0), a command
# that does not run distributed refuses, and a failing rank stops the job
# with its rank named. Skips with a note when OpenMPI or the build is absent.
set -eu
Q=${QSCOPE:-./qscope}
QM=${QSCOPE_MPI:-./qscope-mpi}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
if ! command -v mpirun >/dev/null 2>&1 || [ ! -x "$QM" ]; then
  echo "note: mpirun or $QM absent (apt-get install libopenmpi-dev openmpi-bin; make MPI=1): skipping the MPI tests"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_mpi: $*" >&2; exit 1; }
# CI runs as root; OpenMPI refuses that unless told. Loopback only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_tcp_if_include=lo
# Under make asan (QS_ASAN) OpenMPI's own leaks are suppressed by name
# (scripts/lsan.supp); its libraries have no frame pointers, so malloc stacks
# are unwound the slow way and its components stay loaded, else the frames the
# suppressions match are cut off or nameless.
if [ -n "${QS_ASAN:-}" ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0" \
    OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
fi
MPIRUN="mpirun --oversubscribe -np 2"

# field FILE KEY: the raw JSON value after "KEY": (numbers and arrays).
field() { python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]))" "$1" "$2"; }
same() {
  a=$(field "$1" "$3") b=$(field "$2" "$3")
  [ "$a" = "$b" ] || fail "$3 differs: one process $a, two ranks $b"
}

"$Q" ppl "$M" --text "$T" --ctx 128 --threads 1 --json >"$tmp/p1.json" 2>/dev/null
$MPIRUN "$QM" ppl "$M" --text "$T" --ctx 128 --threads 1 --json >"$tmp/p2.json" 2>"$tmp/p2.err" ||
  fail "mpirun ppl failed: $(cat "$tmp/p2.err")"
for k in ppl chunks tokens_scored running; do same "$tmp/p1.json" "$tmp/p2.json" $k; done
[ "$(grep -c '"ppl"' "$tmp/p2.json")" = 1 ] || fail "more than one rank wrote the result"

"$Q" plan "$M" --preset w8a8-tensor -o "$tmp/plan.json" >/dev/null 2>&1
"$Q" eval "$M" --plan "$tmp/plan.json" --text "$T" --ctx 128 --threads 1 --no-cache --json >"$tmp/e1.json" 2>/dev/null
$MPIRUN "$QM" eval "$M" --plan "$tmp/plan.json" --text "$T" --ctx 128 --threads 1 --no-cache --json \
  >"$tmp/e2.json" 2>"$tmp/e2.err" || fail "mpirun eval failed: $(cat "$tmp/e2.err")"
for k in ppl ppl_base kld_mean kld_median kld_p90 kld_p99 kld_max top1_agree chunks tokens_scored layer_rel_err; do
  same "$tmp/e1.json" "$tmp/e2.json" $k
done

# calib: rank r runs sequences s % N == r layer by layer, the statistics are
# folded in sequence order by each sequence's owner and broadcast: the stats
# file (sensitivity map included) and H are byte-identical to one process,
# with 2 ranks and with 3 ranks on 5 sequences (uneven shares); only rank 0
# writes (one stats file, one H, no temporaries left).
"$Q" calib "$M" --text "$T" --samples 5 --seqlen 64 --threads 1 -o "$tmp/c1.qss" >/dev/null 2>&1 || fail "calib failed"
for np in 2 3; do
  mkdir "$tmp/c$np"
  mpirun --oversubscribe -np $np "$QM" calib "$M" --text "$T" --samples 5 --seqlen 64 --threads 1 -o "$tmp/c$np/c.qss" \
    >"$tmp/c$np.out" 2>"$tmp/c$np.err" || fail "mpirun -np $np calib failed: $(cat "$tmp/c$np.err")"
  cmp "$tmp/c1.qss" "$tmp/c$np/c.qss" >/dev/null || fail "calib over $np ranks: the stats file differs from one process"
  [ "$(ls "$tmp/c$np" | wc -l)" = 2 ] || fail "calib over $np ranks left: $(ls "$tmp/c$np")"
  cmp "$(ls "$tmp"/c1.qss.*.h64)" "$(ls "$tmp/c$np"/c.qss.*.h64)" >/dev/null || fail "calib over $np ranks: H differs"
  [ "$(grep -c '^stats:' "$tmp/c$np.out")" = 1 ] || fail "calib: more than one rank reported"
done
# fewer windows than ranks: rank 2 owns none and still takes part in every collective step
"$Q" calib "$M" --text "$T" --samples 2 --seqlen 64 --threads 1 -o "$tmp/d1.qss" >/dev/null 2>&1 || fail "calib failed"
mkdir "$tmp/d3"
timeout 120 mpirun --oversubscribe -np 3 "$QM" calib "$M" --text "$T" --samples 2 --seqlen 64 --threads 1 \
  -o "$tmp/d3/d.qss" >/dev/null 2>"$tmp/d3.err" || fail "mpirun -np 3 calib of 2 windows failed: $(cat "$tmp/d3.err")"
cmp "$tmp/d1.qss" "$tmp/d3/d.qss" >/dev/null || fail "calib of 2 windows over 3 ranks: the stats file differs"
if $MPIRUN "$QM" calib "$M" --text "$T" --samples 2 --seqlen 64 --pipeline per-sample -o "$tmp/c4.qss" \
  >/dev/null 2>"$tmp/c4.err"; then fail "per-sample calib ran over 2 ranks"; fi
grep -q "layer-streamed pipeline only" "$tmp/c4.err" || fail "no refusal of per-sample: $(cat "$tmp/c4.err")"

# quant: the sites are shared out over the ranks and gathered; rank 0 writes
# the same .qsq, byte for byte, as one process (GPTQ, AdaDim, AQLM, SmoothQuant),
# whichever rank took which unit.
# OpenBLAS single-threaded on both sides: AQLM's H products go through its
# sgemm, whose result depends on its own thread count, and mpirun binds each
# rank to one core (so OpenBLAS would run 1 thread there and 2 here).
export OPENBLAS_NUM_THREADS=1
"$Q" calib "$M" --text "$T" --samples 4 --seqlen 64 --no-sensitivity -o "$tmp/s.qss" >/dev/null 2>&1 ||
  fail "calib failed"
"$Q" plan "$M" --preset smoothquant-w8a8 --stats "$tmp/s.qss" -o "$tmp/sq.json" >/dev/null 2>&1
for P in int4-gptq adadim-int4-gptq aqlm sq; do
  case $P in
    aqlm) src="--plan docs/aqlm-plans/aqlm-1x8g4.json" ;;
    sq) src="--plan $tmp/sq.json" ;;
    *) src="--preset $P" ;;
  esac
  "$Q" quant "$M" $src --stats "$tmp/s.qss" --threads 1 -o "$tmp/q1.qsq" --json >"$tmp/q1.json" 2>/dev/null ||
    fail "quant $P failed"
  $MPIRUN "$QM" quant "$M" $src --stats "$tmp/s.qss" --threads 1 -o "$tmp/q2.qsq" --json >"$tmp/q2.json" \
    2>"$tmp/q2.err" || fail "mpirun quant $P failed: $(cat "$tmp/q2.err")"
  cmp -s "$tmp/q1.qsq" "$tmp/q2.qsq" || fail "quant $P: the .qsq of 2 ranks differs from one process's"
  for k in bpw bytes params bits kernel_bytes notes; do same "$tmp/q1.json" "$tmp/q2.json" $k; done
  python3 - "$tmp/q1.json" "$tmp/q2.json" <<'PY' || fail "quant $P: the sites differ"
import json, sys
a, b = (json.load(open(f))["sites"] for f in sys.argv[1:])
strip = lambda s: [{k: v for k, v in x.items() if k != "seconds"} for x in s]
sys.exit(0 if strip(a) == strip(b) and len(a) == 35 else 1)
PY
  rm -f "$tmp/q2.qsq"
done
# eval of the SmoothQuant plan: every rank gathers the other ranks' sites
# (the replaced norm gains with them) and keeps its own sites' kernels as it
# built them; the numbers are one process's
"$Q" eval "$M" --plan "$tmp/sq.json" --stats "$tmp/s.qss" --text "$T" --ctx 128 --threads 1 --no-cache --no-speed \
  --json >"$tmp/e3.json" 2>/dev/null || fail "eval of the SmoothQuant plan failed"
$MPIRUN "$QM" eval "$M" --plan "$tmp/sq.json" --stats "$tmp/s.qss" --text "$T" --ctx 128 --threads 1 --no-cache \
  --no-speed --json >"$tmp/e4.json" 2>"$tmp/e4.err" || fail "mpirun eval of the SmoothQuant plan failed: $(cat "$tmp/e4.err")"
for k in ppl kld_mean kld_max top1_agree layer_rel_err; do same "$tmp/e3.json" "$tmp/e4.json" $k; done
# three ranks taking units from the shared counter as they become free
timeout 300 mpirun --oversubscribe -np 3 "$QM" quant "$M" --preset int4-gptq --stats "$tmp/s.qss" --threads 1 \
  -o "$tmp/q3r.qsq" >/dev/null 2>"$tmp/q3r.err" || fail "mpirun -np 3 quant failed: $(cat "$tmp/q3r.err")"
"$Q" quant "$M" --preset int4-gptq --stats "$tmp/s.qss" --threads 1 -o "$tmp/q1.qsq" >/dev/null 2>&1 ||
  fail "quant int4-gptq failed"
cmp -s "$tmp/q1.qsq" "$tmp/q3r.qsq" || fail "quant int4-gptq: the .qsq of 3 ranks differs from one process's"
unset OPENBLAS_NUM_THREADS

# A rank that fails stops the job, named, and leaves no file: the H of layer
# 4's down_proj (the file's last matrix) is corrupted, so only the rank that
# owns that site fails its checksum.
cp "$tmp/s.qss" "$tmp/bad.qss"
h=$(ls "$tmp"/s.qss.*.h64)
cp "$h" "$tmp/bad.qss.${h##*.qss.}"
python3 - "$tmp/bad.qss.${h##*.qss.}" <<'PY'
import os, sys
f = sys.argv[1]
last = (172 * 173 // 2 * 4 + 4095) // 4096 * 4096  # the last matrix (hidden 172), page-aligned
with open(f, "r+b") as g:
    g.seek(os.path.getsize(f) - last + 100)
    b = g.read(1)
    g.seek(-1, 1)
    g.write(bytes([b[0] ^ 0xff]))
PY
if timeout 120 $MPIRUN "$QM" quant "$M" --preset int4-gptq --stats "$tmp/bad.qss" --threads 1 -o "$tmp/q3.qsq" \
  >/dev/null 2>"$tmp/q3.err"; then fail "quant with a corrupt H succeeded"; fi
grep -q "rank [01] of 2" "$tmp/q3.err" || fail "the failure does not name the rank: $(cat "$tmp/q3.err")"
grep -q "layer 4 tap 3" "$tmp/q3.err" && grep -q "checksum" "$tmp/q3.err" ||
  fail "the failure does not say what failed: $(cat "$tmp/q3.err")"
[ ! -e "$tmp/q3.qsq" ] || fail "a failed quant left $tmp/q3.qsq"

if $MPIRUN "$QM" synth --preset tiny -o "$tmp/x.gguf" >/dev/null 2>"$tmp/s.err"; then fail "synth ran under 2 ranks"; fi
grep -q "does not run distributed" "$tmp/s.err" || fail "no refusal: $(cat "$tmp/s.err")"

# Every rank fails on a missing text: the job ends (no hang) and names the ranks.
if timeout 60 $MPIRUN "$QM" ppl "$M" --text "$tmp/missing.txt" >/dev/null 2>"$tmp/f.err"; then fail "missing text accepted"; fi
grep -q "rank 1 of 2" "$tmp/f.err" || grep -q "rank 0 of 2" "$tmp/f.err" || fail "failure does not name the rank: $(cat "$tmp/f.err")"
grep -q "missing.txt" "$tmp/f.err" || fail "failure does not name the file: $(cat "$tmp/f.err")"
echo "e2e_mpi: ppl, eval, calib and quant over 2 ranks (calib and quant also 3) equal the single process"
