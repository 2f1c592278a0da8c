"""The accuracy cost of int8 on published trained Keras conv nets, with real inputs (#27, item 3).

    python benchmarks/int8_trained.py FOLDER [--held-out N]

FOLDER holds the published model files of benchmarks/corpus (``python
benchmarks/corpus/fetch.py FOLDER``). Random weights tell nothing about quantization accuracy, so
every net here was trained by its authors, and every input is a real image from a dataset that a
package ships (scikit-learn, a test dependency):

* the MNIST classifiers read scikit-learn's handwritten digits (``load_digits``: 1,797 real 8x8
  scans of 0-16), each scaled to 20 x 20 and centred in 28 x 28 as MNIST's digits are, values
  0-1: the nets recognise 77-89 % of them in float32;
* the face classifiers of face_classification (mini-Xception on 64 x 64 grey faces) read crops of
  scikit-learn's two sample photographs (``load_sample_images``), grey, scaled to [-1, 1] as that
  project's ``preprocess_input`` does. They are real photographs but not faces: the top-1
  agreement says whether int8 keeps the float32 net's decision, not whether it is right.

For each net: ``convc check --precision int8`` with the first 64 images calibrating (min-max) and
the next ``--held-out`` images held out. The table gives the check's verdict (every quantized
group within one step of the int8 reference), the worst and mean relative error and the SQNR of
the output, the top-1 agreement with float32 and, for the digits, the accuracy of both models
against the labels. Results go to benchmarks/int8_trained.json and benchmarks/int8_trained.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import convc  # noqa: E402
from convc.int8_check import Int8CheckReport  # noqa: E402
from convc.options import BuildOptions  # noqa: E402

CALIBRATION = 64

NETS = [
    ("mnist-cnn-keras315", "mnist-cnn-keras315.keras", "digits", "MNIST CNN, Keras 3.15"),
    ("mnist-l2-keras313", "mnist-l2-keras313.keras", "digits", "MNIST CNN with L2, Keras 3.13"),
    ("mnist-cnn-keras231", "mnist-cnn-keras231.h5", "digits", "MNIST CNN, Keras 2.3.1 (.h5)"),
    ("lenet-avgpool-keras38", "lenet-avgpool-keras38.keras", "digits", "LeNet, average pooling"),
    ("fer2013-mini-xception", "fer2013-mini-xception.hdf5", "photos", "emotion, mini-Xception"),
    ("gender-mini-xception", "gender-mini-xception.hdf5", "photos", "gender, mini-Xception"),
]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as MNIST-like 28 x 28 images (values 0-1), shuffled by a seed."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    images = []
    for scan in data.images:
        small = Image.fromarray((scan * (255 / 16)).astype(np.uint8))
        digit = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR), np.float32) / 255
        image = np.zeros((28, 28), np.float32)
        image[4:24, 4:24] = digit
        images.append(image)
    order = np.random.default_rng(0).permutation(len(images))
    return np.stack(images)[order][..., None], data.target[order]


def photos(count: int) -> np.ndarray:
    """``count`` 64 x 64 grey crops of scikit-learn's sample photographs, scaled to [-1, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    grey = [
        np.asarray(Image.fromarray(photo).convert("L"), np.float32)
        for photo in load_sample_images().images
    ]
    crops = []
    for index in range(count):
        image = grey[index % len(grey)]
        size = int(rng.integers(64, 200))
        top = int(rng.integers(0, image.shape[0] - size))
        left = int(rng.integers(0, image.shape[1] - size))
        crop = Image.fromarray(image[top : top + size, left : left + size].astype(np.uint8))
        pixels = np.asarray(crop.resize((64, 64), Image.Resampling.BILINEAR), np.float32)
        crops.append((pixels / 255 - 0.5) * 2)
    return np.stack(crops)[..., None]


def measure(path: Path, images: np.ndarray, labels: np.ndarray | None, held_out: int) -> dict:
    options = BuildOptions(
        precision="int8", calibration=images[:CALIBRATION], calibration_count=CALIBRATION
    )
    held = images[CALIBRATION : CALIBRATION + held_out]
    model = convc.load(path)
    shape = tuple(d for d in model.inputs[0].shape[1:])
    held = held.reshape(len(held), *shape)
    options = options.replace(calibration=images[:CALIBRATION].reshape(CALIBRATION, *shape))
    report = convc.check(path, inputs=held, options=options)
    assert isinstance(report, Int8CheckReport)
    [accuracy] = report.accuracy
    result = {
        "parameters": model.parameter_count,
        "check": "ok" if report.ok else "FAILED",
        "groups": len(report.groups),
        "held_out": len(held),
        "worst_relative": accuracy.worst_relative,
        "mean_relative": accuracy.mean_relative,
        "sqnr_db": accuracy.sqnr_db,
        "top1_agreement": accuracy.top1_agreement,
    }
    if labels is not None:
        truth = labels[CALIBRATION : CALIBRATION + held_out]
        float32 = next(iter(convc.run(path, held).outputs.values()))
        int8 = next(iter(convc.run(convc.build(path, options=options), held).outputs.values()))
        result["float32_accuracy"] = float((float32.argmax(1) == truth).mean())
        result["int8_accuracy"] = float((int8.argmax(1) == truth).mean())
    return result


def table(results: dict) -> str:
    lines = [
        "| net | parameters | inputs | check | worst rel err | mean rel err | SQNR "
        "| top-1 unchanged | accuracy float32 -> int8 |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        accuracy = (
            f"{r['float32_accuracy']:.1%} -> {r['int8_accuracy']:.1%}"
            if "int8_accuracy" in r
            else "-"
        )
        lines.append(
            f"| {name} ({r['kind']}) | {r['parameters']:,} | {r['held_out']} {r['inputs']} | "
            f"{r['check']} ({r['groups']} groups) | {r['worst_relative']:.2%} | "
            f"{r['mean_relative']:.2%} | {r['sqnr_db']:.1f} dB | {r['top1_agreement']:.1%} | "
            f"{accuracy} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--held-out", type=int, default=500)
    args = parser.parse_args()
    digit_images, digit_labels = digits()
    photo_images = photos(CALIBRATION + args.held_out)
    results = {}
    for name, file, data, kind in NETS:
        path = args.folder / file
        if not path.is_file():
            print(f"{name}: {path} is missing (python benchmarks/corpus/fetch.py FOLDER)")
            continue
        images, labels = (digit_images, digit_labels) if data == "digits" else (photo_images, None)
        result = measure(path, images, labels, args.held_out)
        result["kind"] = kind
        result["inputs"] = "scikit-learn digits" if data == "digits" else "photo crops"
        results[name] = result
        print(name, json.dumps(result))
    (HERE / "int8_trained.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (HERE / "int8_trained.md").write_text(
        "# int8 on trained nets with real inputs\n\n"
        f"`python benchmarks/int8_trained.py FOLDER --held-out {args.held_out}`; calibration: "
        f"the first {CALIBRATION} images, min-max, 7-bit weights. What the inputs are: the "
        "script's docstring.\n\n" + table(results) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
