"""Test setup: Keras (the oracle) runs on the torch backend, on the CPU, deterministically."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
