#!/usr/bin/env bash
# The GPU check, one command on a fresh CUDA machine (torch with CUDA installed, no network):
#   bash benchmarks/gpu_check.sh            # figures in $OUT/gpu_check.json when OUT is set
# 1. builds the extension with its CUDA kernels (TORCH_CUDA_ARCH_LIST, default 9.0: H100/H200);
# 2. runs every CUDA test case (the cpu cases are CI's job);
# 3. runs a world of one NCCL rank (benchmarks/nccl_world1.py: distributed picks == select_batch);
# 4. runs benchmarks/bench_gpu.py: selection at N = 50,000, C = 10, D = 1,402, K = 1,000 in
#    float32 and float64, and the embeddings of 50,000 images.
# Each stage has a time limit, so the whole check fits in about 8 minutes on an H200; a stage
# that fails still lets the later ones run, and the script exits non-zero at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
status=0
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
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
stage build 300 env FISHERMASK_FORCE_CUDA=1 MAX_JOBS=16 "$PY" setup.py build_ext --inplace \
  || { echo "build failed: see $OUT/build.log"; exit 1; }
stage native 30 "$PY" -c "import fishermask_ext as f; assert f.native_available('cuda'), 'no CUDA kernels'"
stage tests 120 "$PY" -m pytest -q -x -p no:cacheprovider tests -k cuda \
  --junitxml="$OUT/tests.xml"
stage nccl 60 "$PY" benchmarks/nccl_world1.py
stage bench 180 env FISHERMASK_BENCH_JSON="$OUT/gpu_check.json" "$PY" -m pytest -q -s \
  -p no:cacheprovider benchmarks/bench_gpu.py --benchmark-enable
exit $status
