#!/usr/bin/env bash
# The GPU check, one command on a fresh CUDA machine (torch with CUDA installed, no network):
#   bash benchmarks/gpu_check.sh             # figures in $OUT/gpu_check.json
#   bash benchmarks/gpu_check.sh --dry-run   # the same stages on the CPU at tiny sizes (CI)
# Stages: versions (nvcc present, its CUDA major = torch's), build (the real setup.py path,
# TORCH_CUDA_ARCH_LIST default 9.0: H100/H200), info (what was built), tests (every CUDA test,
# adapters excluded), sanitizers (compute-sanitizer memcheck and racecheck on the step and each
# embedding op), nccl (a world of one NCCL rank), bench (copy and DGEMM rates, selection at
# N = 50,000, C = 10, D = 1,402, K = 1,000 in float32 and float64, 50,000 embeddings; JSON).
# A dry run skips what needs CUDA with the reason, and runs the rest on the CPU: the tests stage
# then runs the CUDA kernels on the CPU (tests/cuda_on_cpu). Each stage has a time limit (the
# whole check fits in about 8 minutes on an H100); a failed stage lets the later ones run, and
# the script exits non-zero at the end. OUT defaults to a fresh folder outside the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
status=0
: > "$OUT/stages.jsonl"
stage() {   # stage NAME SECONDS CMD...: run with a limit, log to $OUT/NAME.log, keep going
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s"; tail -n 5 "$OUT/$name.log"
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}" >> "$OUT/stages.jsonl"
  [ "$rc" = 0 ] || status=1
  return "$rc"
}
skip() {    # skip NAME REASON
  echo "== $1 skipped: $2"
  echo "{\"stage\": \"$1\", \"skipped\": \"$2\"}" >> "$OUT/stages.jsonl"
}
versions() {   # nvcc on PATH, and its CUDA major version equal to torch's
  local torch_cuda nvcc_cuda
  torch_cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
  command -v nvcc >/dev/null || { echo "nvcc not on PATH"; return 1; }
  nvcc_cuda=$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') CUDA ${torch_cuda:-none}, nvcc $nvcc_cuda"
  if [ -z "$torch_cuda" ]; then
    [ "$DRY" = 1 ] && { echo "dry run: a CPU torch, nothing to match"; return 0; }
    echo "this torch has no CUDA"; return 1
  fi
  [ "${torch_cuda%%.*}" = "${nvcc_cuda%%.*}" ] || { echo "CUDA major differs: torch ${torch_cuda}, nvcc ${nvcc_cuda}"; return 1; }
}
export DRY PY
export -f versions   # run by `timeout` in a child bash
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
stage versions 30 bash -c versions || { [ "$DRY" = 1 ] || { echo "see $OUT/versions.log"; exit 1; }; }
if [ "$DRY" = 1 ]; then   # setup.py's configuration without compiling: CI built the CPU module,
  stage build 120 "$PY" setup.py --name   # and .ci/nvcc-check compiles the .cu with its flags
else
  stage build 300 env FISHERMASK_FORCE_CUDA=1 MAX_JOBS=16 "$PY" setup.py build_ext --inplace \
    || { echo "build failed: see $OUT/build.log"; exit 1; }
fi
# The small cases compute-sanitizer runs: every native op against its twin, in float64.
SANITIZED="tests/ops/test_trace_ratio_step.py tests/ops/test_embed_ops.py tests/ops/test_fisher_ops.py"
SANITIZE_K="matches_twin and float64"
stage info 60 "$PY" -m fishermask_ext info   # versions, native kernels per op and device, archs
if [ "$DRY" = 1 ]; then   # the CUDA kernels themselves, on the CPU
  stage tests 300 "$PY" -m pytest -q -x -p no:cacheprovider tests -k cuda --ignore=tests/adapters \
    --junitxml="$OUT/tests.xml"
  skip sanitizers "dry run: compute-sanitizer needs a GPU"
  # ... but the tests it would run must exist: the same filter on the CPU collects some
  # (pytest exits 5 when it collects none).
  stage sanitizer_filter 120 "$PY" -m pytest -q --collect-only -p no:cacheprovider $SANITIZED \
    -k "cpu and $SANITIZE_K"
  skip nccl "dry run: NCCL needs a GPU"
else
  stage tests 150 "$PY" -m pytest -q -x -p no:cacheprovider tests -k cuda --ignore=tests/adapters \
    --ignore=tests/cuda_on_cpu --junitxml="$OUT/tests.xml"
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      stage "sanitizer_$tool" 120 compute-sanitizer --tool "$tool" --error-exitcode 1 \
        "$PY" -m pytest -q -x -p no:cacheprovider $SANITIZED -k "cuda and $SANITIZE_K"
    done
  else
    skip sanitizers "compute-sanitizer not on PATH"
  fi
  stage nccl 60 "$PY" benchmarks/nccl_world1.py
fi
stage bench 180 env FISHERMASK_BENCH_JSON="$OUT/gpu_check.json" "$PY" -m pytest -q -s \
  -p no:cacheprovider benchmarks/bench_gpu.py $([ "$DRY" = 1 ] || echo --benchmark-enable)
echo "figures and logs: $OUT"
exit $status
