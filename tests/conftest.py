"""Test setup: Keras (the oracle) runs on the torch backend, on the CPU, deterministically.

Under CI (``CI`` set, as .ci/run runs) Hypothesis draws the same examples every run, so that a
red CI reproduces; elsewhere it explores, and prints the seed of a failure.
"""

import os

from hypothesis import settings

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "explore")
