"""Keras layers convc knows and refuses, each with the reason a user is told: the one list that
the ``.conv`` resolver and the model-file importer both read."""

from __future__ import annotations

_RECURRENT = "convc compiles convolutional networks; recurrent layers are not supported"
_IMAGE = "an image layer that computes at inference, whose checks convc does not follow yet"

REFUSED: dict[str, str] = {
    "Lambda": "a Lambda layer holds Python code, which convc never runs; write the computation "
    "with Keras layers (Activation, Rescaling, Multiply, ...)",
    "TFOpLambda": "a TensorFlow operation recorded by tf.keras; write it with Keras layers",
    "SlicingOpLambda": "a TensorFlow slice recorded by tf.keras; use Cropping or Reshape",
    "LSTM": _RECURRENT,
    "GRU": _RECURRENT,
    "SimpleRNN": _RECURRENT,
    "Bidirectional": _RECURRENT,
    "ConvLSTM1D": _RECURRENT,
    "ConvLSTM2D": _RECURRENT,
    "ConvLSTM3D": _RECURRENT,
    "Conv2DLSTM": _RECURRENT,
    "Embedding": "convc compiles convolutional networks; Embedding is not supported",
    "MultiHeadAttention": "attention layers are not supported",
    "Attention": "attention layers are not supported",
    "AdditiveAttention": "attention layers are not supported",
    "GroupQueryAttention": "attention layers are not supported",
    "AutoContrast": _IMAGE,
    "Equalization": _IMAGE,
    "Solarization": _IMAGE,
    "AugMix": _IMAGE,
    "CutMix": _IMAGE,
    "MixUp": _IMAGE,
    "RandAugment": _IMAGE,
}
