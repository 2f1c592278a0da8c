"""convc: compile Keras-style convolutional layer stacks, written as text, into ONNX."""

__version__ = "0.1.0"
