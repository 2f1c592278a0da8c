"""The tf_keras side of random_files.py: run inside an environment with tf_keras.

    PYTHON benchmarks/corpus/tf_keras_worker.py JOBS.json FOLDER

JOBS.json is a list of ``{"stem", "source"}``: a random graph as the Python Keras 3 runs, which
this runs against tf_keras (``keras``, ``tf.keras`` and the layer names bound to tf_keras; import
lines dropped). Each model gets random weights in every variable (scaled by fan-in, variances
positive, the recipe of tests/oracle.py), runs on seeded standard-normal inputs (batch 2), and is
saved as ``STEM.h5``, ``STEM.keras``, and ``STEM.json`` with ``STEM-weights.h5``; inputs and
outputs go to ``STEM-io.npz``. One JSON line per job reports the files, the input names, or the
error. convc is never imported here.
"""

from __future__ import annotations

import json
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

SHIM = types.SimpleNamespace(
    Model=tf_keras.Model,
    Input=tf_keras.Input,
    models=tf_keras.models,
    layers=tf_keras.layers,
    activations=tf_keras.activations,
    initializers=tf_keras.initializers,
    regularizers=tf_keras.regularizers,
    constraints=tf_keras.constraints,
    config=types.SimpleNamespace(set_image_data_format=tf_keras.backend.set_image_data_format),
)
NAMESPACE = {
    **{name: getattr(tf_keras.layers, name) for name in dir(tf_keras.layers) if name[0] != "_"},
    "Input": tf_keras.Input,
    "keras": SHIM,
    "layers": tf_keras.layers,
    "tf": types.SimpleNamespace(keras=SHIM),
    "initializers": tf_keras.initializers,
    "activations": tf_keras.activations,
}


def build(source: str):
    lines = [line for line in source.splitlines() if not line.startswith(("import ", "from "))]
    namespace = dict(NAMESPACE)
    try:
        exec("\n".join(lines), namespace)  # noqa: S102 - our own generated graph text
    finally:
        tf_keras.backend.set_image_data_format("channels_last")
    return [value for value in namespace.values() if isinstance(value, tf_keras.Model)][-1]


def randomize(model) -> None:
    rng = np.random.default_rng(0)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            fan_in = max(1, int(np.prod(shape[:-1]))) if len(shape) > 1 else 1
            value = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            if "variance" in variable.name:
                value = np.abs(value) + np.float32(0.5)
            values.append(value)
        layer.set_weights(values)


def predict(model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    xs = [
        np.random.default_rng(1 + i).standard_normal((2, *t.shape[1:])).astype(np.float32)
        for i, t in enumerate(model.inputs)
    ]
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    if isinstance(out, dict):
        out = [out[key] for key in sorted(out)]
    if not isinstance(out, list | tuple):
        out = [out]
    return xs, [np.asarray(o) for o in out]


def save(model, folder: str, stem: str) -> dict:
    files = {}
    for form in ("h5", "keras", "json"):
        try:
            if form == "json":
                path = os.path.join(folder, f"{stem}.json")
                weights = os.path.join(folder, f"{stem}-weights.h5")
                with open(path, "w") as handle:
                    handle.write(model.to_json())
                model.save_weights(weights)
                files[form] = [path, weights]
            else:
                path = os.path.join(folder, f"{stem}.{form}")
                model.save(path)
                files[form] = [path, None]
        except Exception as error:  # noqa: BLE001 - reported per file
            files[form] = [f"error: {type(error).__name__}: {error}"[:300], None]
    return files


def main() -> int:
    with open(sys.argv[1]) as handle:
        jobs = json.load(handle)
    folder = sys.argv[2]
    print(json.dumps({"version": tf_keras.__version__}), flush=True)
    for job in jobs:
        stem = job["stem"]
        tf_keras.backend.clear_session()
        tf_keras.backend.set_image_data_format("channels_last")
        try:
            model = build(job["source"])
            randomize(model)
            xs, outputs = predict(model)
        except Exception as error:  # noqa: BLE001 - tf_keras's own failure, reported
            message = f"tf_keras cannot build it: {type(error).__name__}: {error}"[:300]
            print(json.dumps({"stem": stem, "error": message}), flush=True)
            continue
        np.savez(
            os.path.join(folder, f"{stem}-io.npz"),
            **{f"input_{i}": x for i, x in enumerate(xs)},
            **{f"output_{i}": o for i, o in enumerate(outputs)},
        )
        record = {"stem": stem, "input_names": list(model.input_names)}
        record["files"] = save(model, folder, stem)
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
