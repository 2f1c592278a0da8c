"""The limits convc enforces on its input, in one place.

Hostile or careless input must end in a clean error, quickly, without exhausting memory or
recursion. Each limit is far above what a real model needs.
"""

MAX_SOURCE_BYTES = 1 << 20
"""A .conv file is at most 1 MiB (about 20,000 layers of typical length)."""


def imported_text_chars(statements: int) -> int:
    """The longest text ``convc import`` may write, and convc build, for a model file whose
    graph has ``statements`` inputs, layers and calls: a .conv file's limit and 64 characters a
    statement more (an imported statement is 12 to 84 characters: a chain of bare ReLUs the
    least, ConvNeXt's and a Conv2D chain's layers with Keras's names the most). A model of
    ``MAX_LAYERS`` layers fits; the writer stops as soon as its text passes this."""
    return MAX_SOURCE_BYTES + 64 * statements


IMPORTED_SYNTAX_BASE = 300_000
"""The syntax values (calls, names, literals, each number of a list) any imported text may
hold, whatever its size: as many as 1 MiB of .conv text of numbers holds."""


def imported_syntax_values(statements: int) -> int:
    """The most syntax values ``convc import`` writes for a model file whose graph has
    ``statements`` inputs, layers and calls: ``IMPORTED_SYNTAX_BASE`` and 6 a statement more
    (Keras's applications need 4.5 to 5.4 a statement, a chain of bare layers 2 to 4.7). Each
    value costs about 300 bytes while the text is resolved, so this bounds what a file can
    make the import hold by padding its layers' arguments with numbers (a 300 KB file of
    100,000 layers with 30 zeros each made it write 3.6 million values, 1.4 GB); the writer
    stops as soon as its text passes it."""
    return IMPORTED_SYNTAX_BASE + 6 * statements


MAX_NESTING = 32
"""Brackets nest at most this deep; Keras arguments need three levels at most."""

MAX_LAYERS = 100_000
"""Layers in one model."""

MAX_ERRORS = 20
"""Errors reported from one file before convc stops looking for more."""

MAX_INT_DIGITS = 100
"""An integer, written or computed, has at most this many digits (the 32-bit limit on layer
arguments is checked later)."""

MAX_EXPRESSION_DEPTH = 100
"""An expression nests at most this deep (operators, calls, subscripts and brackets together)."""

MAX_BLOCK_DEPTH = 20
"""``if``, ``for`` and ``def`` blocks nest at most this deep."""

MAX_STEPS = 5_000_000
"""Evaluation steps of one program: every expression evaluated, statement executed, loop
iteration and item a builtin goes through counts one. A loop that builds 10,000 layers through
a helper function takes about 160,000."""

MAX_CALL_DEPTH = 32
"""Function calls nest at most this deep; a function that calls itself (recursion) is refused."""

MAX_EVALUATION_DEPTH = 160
"""Expressions, blocks and calls together nest at most this deep while a program runs."""

MAX_ITEMS = 1_000_000
"""Items of one list, tuple or dict, and characters of one string."""

MAX_ALLOCATION = 20_000_000
"""Items and characters a program creates in all (a bound on its memory)."""

MAX_FORMAT_WIDTH = 10_000
"""The width and precision a format specification (f-strings, format, %) may ask for."""

MAX_INT = 2**31 - 1
"""The largest integer argument or tensor dimension (ONNX runtimes index with 32 bits)."""

MAX_HDF5_OBJECTS = 1_000_000
"""Groups and datasets in one HDF5 file: a model of ``MAX_LAYERS`` layers holds a few each."""

MAX_HDF5_ATTRIBUTE_BYTES = 256 << 20
"""All attributes of one HDF5 file, as JSON: a model config (at most ``MAX_CONFIG_BYTES``) and a
few names per layer."""

MAX_CONFIG_VALUES = 6_000_000
"""JSON values (objects, arrays, strings, numbers; keys not counted) in a model's config, counted
before it is parsed (``convc.importer.files``). Parsing costs up to about 130 bytes of memory a
value (an object holding an empty object), so a 63 KB archive whose config was 60 MiB of ``[]``
(20 million values) took 1.7 GB; at this limit parsing takes at most about 800 MB. A model of
``MAX_LAYERS`` layers fits: the config Keras 3 writes for a Sequential of 100,000 layers
(Conv2D, BatchNormalization and ReLU in turn) holds 4.0 million values (measured: 40 a layer),
its functional form about 5.9 million (the inbound nodes add 19 a layer). Real configs spend
15 to 18 bytes a value, so one within the 128 MiB of ``convc.importer.files.MAX_CONFIG_BYTES``
meets this limit before that one."""

MAX_WEIGHT_BYTES = 16 << 30
"""The largest total of weights (float32) a model may have: 16 GiB."""

EXTERNAL_DATA_BYTES = 2**31 - 1 - (64 << 20)
"""Above this many bytes of serialized model, weights go to an external data file beside the
.onnx (protobuf cannot hold 2 GiB; the margin leaves room for the graph itself)."""


def weights_file_bytes(parameters: int, arrays: int) -> int:
    """The most bytes a compressed weights file of a model with ``parameters`` numbers in
    ``arrays`` arrays may inflate to: float64 weights with an optimizer's two moments beside
    each (24 bytes a number), 4 KiB of HDF5 bookkeeping for each of these arrays, and 16 MiB
    more."""
    return 24 * parameters + 3 * 4096 * arrays + (16 << 20)
