"""int8 on a trained net with real inputs (#27, item 3): a small CNN trained here on
scikit-learn's handwritten digits (real 8x8 scans, shipped with the package), its weights written
as a ``.conv`` file's ``.npz``, built by convc in int8 with 64 digits calibrating and checked on 300 held out:
onnxruntime agrees with the int8 reference in every group, int8 keeps float32's decision on
nearly every digit, and the accuracy against the labels hardly moves. The published nets of
benchmarks/int8_trained.py (README's table) need their files fetched; this one trains in
seconds."""

from __future__ import annotations

import numpy as np
import pytest

import convc
from convc.arrays import npz_bytes
from convc.int8_check import Int8CheckReport
from convc.options import BuildOptions

CALIBRATION, HELD_OUT = 64, 300


NET = """\
import keras
from keras import layers

inputs = keras.Input(shape=(8, 8, 1), name="digit")
x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
x = layers.BatchNormalization(epsilon=1e-05, name="bn1")(x)
x = layers.ReLU(name="relu1")(x)
x = layers.MaxPooling2D(2, name="pool")(x)
x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
x = layers.GlobalAveragePooling2D(name="gap")(x)
outputs = layers.Dense(10, name="scores")(x)
model = keras.Model(inputs, outputs)
"""


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    """NET trained by torch (Keras's fit on its torch backend took minutes here), its weights
    written in Keras's layouts."""
    datasets = pytest.importorskip("sklearn.datasets")  # a test dependency (pyproject.toml)
    import torch

    data = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(data.images))
    images = (data.images[order] / 16.0).astype(np.float32)[..., None]
    labels = data.target[order]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend
    net = torch.nn.ModuleDict(
        {
            "conv1": torch.nn.Conv2d(1, 16, 3, padding=1, bias=False),
            "bn1": torch.nn.BatchNorm2d(16),
            "conv2": torch.nn.Conv2d(16, 32, 3, padding=1),
            "scores": torch.nn.Linear(32, 10),
        }
    )

    def forward(x):
        x = torch.relu(net["bn1"](net["conv1"](x)))
        x = torch.relu(net["conv2"](torch.nn.functional.max_pool2d(x, 2)))
        return net["scores"](x.mean(dim=(2, 3)))

    train = slice(CALIBRATION + HELD_OUT, None)  # trained on neither set
    x = torch.from_numpy(images[train].transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels[train].astype(np.int64))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for _ in range(30):
        for batch in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(forward(x[batch]), y[batch]).backward()
            optimizer.step()
    net.eval()
    torch.set_num_threads(threads)

    def array(tensor):
        return tensor.detach().numpy().astype(np.float32)

    weights = {
        "conv1/kernel": array(net["conv1"].weight).transpose(2, 3, 1, 0),
        "bn1/gamma": array(net["bn1"].weight),
        "bn1/beta": array(net["bn1"].bias),
        "bn1/moving_mean": array(net["bn1"].running_mean),
        "bn1/moving_variance": array(net["bn1"].running_var),
        "conv2/kernel": array(net["conv2"].weight).transpose(2, 3, 1, 0),
        "conv2/bias": array(net["conv2"].bias),
        "scores/kernel": array(net["scores"].weight).T,
        "scores/bias": array(net["scores"].bias),
    }
    folder = tmp_path_factory.mktemp("digits")
    (folder / "digits.conv").write_text(NET)
    (folder / "digits.npz").write_bytes(npz_bytes(weights))
    with torch.no_grad():
        logits = forward(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    return folder / "digits.conv", folder / "digits.npz", images, labels, logits


def test_a_trained_net_keeps_its_accuracy_in_int8(digits_net):
    path, weights, images, labels, logits = digits_net
    options = BuildOptions(
        precision="int8", calibration=images[:CALIBRATION], calibration_count=CALIBRATION
    )
    held = images[CALIBRATION : CALIBRATION + HELD_OUT]
    truth = labels[CALIBRATION : CALIBRATION + HELD_OUT]
    # the float32 model computes what torch trained
    float32 = convc.run(path, held, weights=weights).outputs["scores"]
    np.testing.assert_allclose(
        float32, logits[CALIBRATION : CALIBRATION + HELD_OUT], rtol=1e-4, atol=1e-4
    )
    report = convc.check(path, weights, inputs=held, options=options)
    assert isinstance(report, Int8CheckReport)
    assert report.ok, report.render()
    [scores] = report.accuracy
    assert scores.top1_agreement is not None and scores.top1_agreement >= 0.97, report.render()
    assert scores.sqnr_db > 25, report.render()

    int8 = convc.run(convc.build(path, weights, options=options), held).outputs["scores"]
    float_accuracy = (float32.argmax(1) == truth).mean()
    int8_accuracy = (int8.argmax(1) == truth).mean()
    assert float_accuracy > 0.85, float_accuracy  # the net learned the digits
    assert abs(float_accuracy - int8_accuracy) <= 0.02, (float_accuracy, int8_accuracy)
