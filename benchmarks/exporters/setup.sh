#!/usr/bin/env bash
# Make the exporters' virtualenvs for the side-by-side benchmark (benchmarks/run.py).
#
#     bash benchmarks/exporters/setup.sh            # both
#     bash benchmarks/exporters/setup.sh torch      # or only one of: torch, tf
#
# Two environments, each what that exporter's own users install, so that neither pays for the
# other's imports (Keras 3 imports TensorFlow at start-up whenever it is installed, about 3 s,
# even on the torch backend):
#
#   benchmarks/.venv-exporters     torch (CPU) + torchvision + Keras 3 + onnxscript + onnx:
#                                  Keras's own export (torch backend) and torch.onnx.export of
#                                  the same net written in torch.nn (torchvision's twins of the
#                                  keras.applications nets);
#   benchmarks/.venv-exporters-tf  tensorflow-cpu + tf_keras + tf2onnx + Keras 3 + onnx: Keras's
#                                  own export (TensorFlow backend) and tf2onnx of the same
#                                  model in tf_keras.
#
# convc never depends on any of these; its own environment is untouched. PYTHON picks the
# interpreter (default python3, 3.11 or newer). Set PIP_ARGS for extra pip options.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
python="${PYTHON:-python3}"
which=("${@:-torch}")
[[ $# -eq 0 ]] && which=(torch tf)

make_venv() {
    local dir="$1"
    shift
    echo "== $dir: $*"
    "$python" -m venv "$dir"
    # shellcheck disable=SC2086
    "$dir/bin/python" -m pip install --quiet ${PIP_ARGS:-} "$@"
    "$dir/bin/python" -m pip check
}

for name in "${which[@]}"; do
    case "$name" in
        torch)
            make_venv "$bench/.venv-exporters" \
                "torch==2.13.0" "torchvision==0.28.0" "keras==3.15.1" "onnxscript==0.7.2" \
                "onnx==1.23.2" "h5py"
            ;;
        tf)
            make_venv "$bench/.venv-exporters-tf" \
                "tensorflow-cpu==2.21.0" "tf_keras==2.21.0" "tf2onnx==1.17.0" "keras==3.15.1" \
                "onnx==1.23.2"
            ;;
        *)
            echo "unknown exporter environment: $name (torch or tf)" >&2
            exit 2
            ;;
    esac
done
echo "ready: python benchmarks/run.py measures these exporters beside convc"
