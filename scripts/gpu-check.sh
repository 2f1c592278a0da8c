#!/usr/bin/env bash
# The GPU tier in one step: set up, run `pytest -m gpu` (tests/test_gpu.py), print one table and
# write it to docs/gpu-matrix.md. Made for a machine lent for a few minutes: it finishes in under
# 8 minutes (the tier is cut at --limit seconds, counted from the script's start, and the table
# says what ran).
#
#   scripts/gpu-check.sh [--dry-run | --gpu] [--no-install] [--wheels DIR] [--python PY]
#                        [--out FILE] [--limit SECONDS] [--workers N]
#
# With an NVIDIA GPU (nvidia-smi -L finds one) it installs what the tier needs unless it is there
# already: onnxruntime-gpu with CUDA and cuDNN from their wheels, and TensorRT's wheels, pinned
# (ORT_GPU_SPEC, TRT_SPEC override the pins), from the package index or, with --wheels DIR, from
# wheels the caller brought (pip --no-index --find-links DIR). A failed install is reported in
# one line and the run goes on with what is installed (--no-install: only what is installed).
# Without a GPU, or with --dry-run, it runs the same tier on the CPU (CONVC_GPU_DRY_RUN=1: the
# cpu provider with the portable and the tensorrt targets): everything but the GPU providers.
#
# The tier needs convc's dependencies, pytest (and pytest-xdist to run in parallel); not Keras
# or torch: its cases come from tests/gpu_cases.json.

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="$ROOT/docs/gpu-matrix.md"
MODE=auto
INSTALL=1
WHEELS=""
BUDGET=450  # seconds for everything but the summary: well inside 8 minutes
WORKERS=""
ORT_GPU_SPEC="${ORT_GPU_SPEC:-onnxruntime-gpu[cuda,cudnn]==1.31.1}"
TRT_SPEC="${TRT_SPEC:-tensorrt-cu12==10.16.1.11}"
TEST_DEPS=(pytest pytest-xdist "lark>=1.2,<2" numpy "onnx>=1.17,<1.24" h5py "ml_dtypes>=0.4" "protobuf>=4.25")

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
log() { echo "gpu-check: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) MODE=dry ;;
    --gpu) MODE=gpu ;;
    --no-install) INSTALL=0 ;;
    --wheels) WHEELS="${2:?--wheels needs a directory}"; shift ;;
    --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    --limit) BUDGET="${2:?--limit needs seconds}"; shift ;;
    --workers) WORKERS="${2:?--workers needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) log "unknown option $1"; usage >&2; exit 2 ;;
  esac
  shift
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
RESULTS="$WORK/results.jsonl"
NOTES=()
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this tree's convc, whatever is installed

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "no Python interpreter '$PYTHON' (give --python PY)"; exit 2
fi

# -- is there a GPU? ---------------------------------------------------------------------------
HAVE_GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  HAVE_GPU=1
fi
if [ "$MODE" = gpu ] && [ "$HAVE_GPU" = 0 ]; then
  log "--gpu: no NVIDIA GPU here (nvidia-smi -L finds none)"; exit 2
fi
if [ "$MODE" = auto ]; then
  if [ "$HAVE_GPU" = 1 ]; then MODE=gpu; else
    MODE=dry; log "no NVIDIA GPU here (nvidia-smi -L finds none): a CPU dry run"
  fi
fi

# -- installing --------------------------------------------------------------------------------
PIP=("$PYTHON" -m pip install --disable-pip-version-check -q)
[ -n "$WHEELS" ] && PIP+=(--no-index --find-links "$WHEELS")

pip_install() {  # pip_install WHAT PACKAGE...: one line on failure, the log kept
  local what="$1"; shift
  if "${PIP[@]}" "$@" >"$WORK/pip-$what.log" 2>&1; then
    log "installed $what ($*)"; return 0
  fi
  local why
  why="$(grep -m1 -E 'ERROR|error:' "$WORK/pip-$what.log" | cut -c1-200)"
  log "pip install of $what FAILED: ${why:-see $WORK/pip-$what.log}"
  log "  (no package index here? bring the wheels and give --wheels DIR)"
  NOTES+=("pip install of $what failed: ${why:-unknown reason}")
  return 1
}

has_cuda_provider() {
  "$PYTHON" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null
}

if ! "$PYTHON" -c "import pytest, lark, onnx, h5py, ml_dtypes, numpy" 2>/dev/null; then
  if [ "$INSTALL" = 1 ]; then pip_install test-dependencies "${TEST_DEPS[@]}"; fi
fi
if [ "$MODE" = gpu ] && [ "$INSTALL" = 1 ]; then
  if has_cuda_provider; then
    log "onnxruntime-gpu is already installed"
  else
    # onnxruntime and onnxruntime-gpu install the same module: the CPU one goes first.
    CPU_ORT="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("onnxruntime"))' 2>/dev/null)"
    [ -n "$CPU_ORT" ] && "$PYTHON" -m pip uninstall -y -q onnxruntime >/dev/null 2>&1
    if ! pip_install onnxruntime-gpu "$ORT_GPU_SPEC" && [ -n "$CPU_ORT" ]; then
      pip_install onnxruntime-restored "onnxruntime==$CPU_ORT"
    fi
  fi
  if "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    log "TensorRT's Python wheels are already installed"
  else
    pip_install tensorrt "$TRT_SPEC"
  fi
fi

# The CUDA, cuDNN and TensorRT libraries of NVIDIA's wheels, for the dynamic loader.
LIBS="$("$PYTHON" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = [*site.getsitepackages(), site.getusersitepackages()]
found = []
for root in roots:
    found += sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib")))
    found += [p for p in (os.path.join(root, "tensorrt_libs"), os.path.join(root, "tensorrt")) if os.path.isdir(p)]
print(":".join(found))
EOF
)"
[ -n "$LIBS" ] && export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# -- which lanes can run -----------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
  if ! has_cuda_provider; then
    log "onnxruntime has no CUDA provider after the install: a CPU dry run instead"
    NOTES+=("A GPU was present but onnxruntime-gpu was not usable: this is a CPU dry run.")
    MODE=dry
  else
    LANES=""
    for provider in cuda tensorrt; do
      why="$("$PYTHON" -c "from convc.runtime import missing_library as m; print(m('$provider'))")"
      case "$why" in
        "its libraries load"*) LANES="$LANES${LANES:+,}$provider:$([ $provider = cuda ] && echo portable || echo tensorrt)" ;;
        *) log "the $provider provider cannot start: $why"; NOTES+=("The $provider lane did not run: $why.") ;;
      esac
    done
    if [ -z "$LANES" ]; then
      NOTES+=("Neither GPU provider could start: this is a CPU dry run.")
      MODE=dry
    else
      export CONVC_GPU_LANES="$LANES"
    fi
  fi
fi
if [ "$MODE" = dry ]; then
  export CONVC_GPU_DRY_RUN=1
  LABEL="CPU dry run (no GPU provider ran)"
  NOTES+=("This is a CPU dry run: the tier's tests ran on onnxruntime's CPU provider, with the portable and the tensorrt targets (lanes cpu:portable, cpu:tensorrt), and \`--provider cpu\` where the GPU run says cuda. The GPU table is to be filled by \`scripts/gpu-check.sh\` on a machine with an NVIDIA GPU.")
else
  LABEL="GPU run (lanes $CONVC_GPU_LANES)"
  # TensorRT builds one engine per model: a low builder optimization level builds them fast
  # (the engines are all float32 whatever the level).
  export CONVC_TRT_OPTIONS="${CONVC_TRT_OPTIONS:-trt_builder_optimization_level=1}"
fi

# -- the tier ----------------------------------------------------------------------------------
if [ -z "$WORKERS" ]; then
  cores="$(nproc 2>/dev/null || echo 2)"
  WORKERS=$(( cores < 8 ? cores : 8 ))
fi
PARALLEL=()
if "$PYTHON" -c "import xdist" 2>/dev/null && [ "$WORKERS" -gt 1 ]; then PARALLEL=(-n "$WORKERS"); fi
if ! "$PYTHON" -c "import pytest, convc.runtime" 2>"$WORK/import.log"; then
  why="$(tail -n 1 "$WORK/import.log")"
  log "cannot run the tier: $why"
  NOTES+=("The tier could not run: $why.")
fi
LEFT=$(( BUDGET - SECONDS ))
[ "$LEFT" -lt 60 ] && LEFT=60
export CONVC_GPU_RESULTS="$RESULTS"
log "running the gpu tier ($LABEL), at most ${LEFT}s, ${PARALLEL[*]:-serially}"
timeout --signal=INT --kill-after=30 "$LEFT" \
  "$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider "${PARALLEL[@]}" \
  >"$WORK/pytest.log" 2>&1
STATUS=$?
tail -n 5 "$WORK/pytest.log" >&2
if [ "$STATUS" = 124 ] || [ "$STATUS" = 137 ] || grep -q "KeyboardInterrupt" "$WORK/pytest.log"; then
  NOTES+=("The tier was stopped at its time limit (${LEFT}s): the counts below are what ran by then.")
fi
SUMMARY_LINE="$(grep -E '^[0-9]+ (passed|failed|skipped)|passed|failed' "$WORK/pytest.log" | tail -n 1)"
NOTES+=("pytest: ${SUMMARY_LINE:-no summary line (see the log)}; $(( SECONDS ))s in all.")

ARGS=()
for note in "${NOTES[@]}"; do ARGS+=(--note "$note"); done
"$PYTHON" scripts/gpu_summary.py "$RESULTS" "$OUT" --label "$LABEL" "${ARGS[@]}"
SUMMARY=$?
log "wrote $OUT (logs in $WORK), $(( SECONDS ))s"
[ "$STATUS" = 0 ] && [ "$SUMMARY" = 0 ]
exit $?
