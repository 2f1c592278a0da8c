"""The framework's own prediction for model files: run inside a Keras 3 or a tf_keras environment.

    PYTHON benchmarks/corpus/predict.py --framework keras|tf_keras JOBS.json

JOBS.json is a list of ``{"id", "model", "weights" (or null), "inputs": NPZ (or null: load
only), "outputs": NPZ}``.
For each job this loads the model as that framework loads it (``load_model`` for ``.keras`` and
``.h5``; ``model_from_json`` then ``load_weights`` for JSON, a JSON text stored as a JSON string
decoded once), feeds the arrays of ``inputs`` (``input_0``, ``input_1``, ... in the order of
``model.inputs``) and writes ``output_0``, ... in the order of ``model.outputs``. It prints one
JSON line per job as it finishes, ``{"id", "ok"}`` or ``{"id", "error"}``, so that a caller
that has to stop the process keeps what finished.

A file whose config holds a ``Lambda`` layer is not loaded: the legacy loaders rebuild its
function from the file's marshalled bytecode, which would run the file's code. convc is never
imported here, and this script is no part of convc: the corpus benchmark runs it in the
framework's own environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback


def _framework(name: str):
    if name == "tf_keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tf_keras

        return tf_keras
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


LAMBDA_TEXT = re.compile(r'\\?"class_name\\?"\s*:\s*\\?"Lambda\\?"')


def _carries_code(text: str) -> bool:
    """Whether a config names a ``Lambda`` layer anywhere: read as JSON (a JSON text stored as a
    JSON string decoded once more, as ``load`` decodes it), and, should it not parse, searched as
    text, quotes escaped or not."""
    if LAMBDA_TEXT.search(text):
        return True
    try:
        config = json.loads(text)
        if isinstance(config, str):
            config = json.loads(config)
    except ValueError:
        return False
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _config_text(path: str) -> str:
    if path.endswith(".json"):
        with open(path) as handle:
            return handle.read()
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK"):
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return archive.read("config.json").decode()
    import h5py

    with h5py.File(path, "r") as handle:
        config = handle.attrs.get("model_config", "")
    return config.decode() if isinstance(config, bytes) else str(config)


def load(framework, path: str, weights: str | None):
    text = _config_text(path)
    if _carries_code(text):
        raise RuntimeError("not loaded: the file has a Lambda layer, whose code would be run")
    if path.endswith(".json"):
        config = json.loads(text)
        if isinstance(config, str):  # json.dump(model.to_json()): decoded once more
            text = config
        model = framework.models.model_from_json(text)
        if weights:
            model.load_weights(weights)
        return model
    kwargs = {"compile": False}
    if path.endswith(".keras"):
        kwargs["safe_mode"] = True
    return framework.models.load_model(path, **kwargs)


def predict(framework, model, arrays: dict):
    import numpy as np

    xs = [arrays[f"input_{i}"] for i in range(len(model.inputs))]
    result = model(xs if len(xs) > 1 else xs[0], training=False)
    if isinstance(result, dict):
        result = [result[key] for key in sorted(result)]
    if not isinstance(result, list | tuple):
        result = [result]
    convert = getattr(getattr(framework, "ops", None), "convert_to_numpy", None)  # Keras 3
    return [np.asarray(convert(r) if convert else r.numpy()) for r in result]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=["keras", "tf_keras"], required=True)
    parser.add_argument("jobs")
    args = parser.parse_args()
    framework = _framework(args.framework)
    import numpy as np

    with open(args.jobs) as handle:
        jobs = json.load(handle)
    version = getattr(framework, "__version__", "?")
    print(json.dumps({"framework": args.framework, "version": version}), flush=True)
    for job in jobs:
        try:
            if hasattr(framework, "backend") and hasattr(framework.backend, "clear_session"):
                framework.backend.clear_session()
            model = load(framework, job["model"], job.get("weights"))
            if job.get("inputs") is None:  # nothing to compare with: does it load?
                print(json.dumps({"id": job["id"], "ok": True, "loaded_only": True}), flush=True)
                continue
            with np.load(job["inputs"]) as data:
                arrays = {key: data[key] for key in data.files}
            outputs = predict(framework, model, arrays)
            np.savez(job["outputs"], **{f"output_{i}": o for i, o in enumerate(outputs)})
            print(json.dumps({"id": job["id"], "ok": True}), flush=True)
        except Exception as error:  # noqa: BLE001 - reported per job, the rest go on
            lines = [line for line in str(error).splitlines() if line.strip()]
            message = f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
            detail = traceback.format_exc(limit=2)[-600:]
            print(json.dumps({"id": job["id"], "error": message, "detail": detail}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
