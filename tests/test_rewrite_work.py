"""The graph rewrites' work grows linearly with the graph (#23): a chain of patterns twice as long
costs about twice as much, not four times (a walk of every node per firing made a .conv of
100,000 ZeroPadding2D and Conv2D layers build for hours).

Counted, not timed: every node that a walk of the emitter's node list visits (during the
rewrites and the passes after them), and every look at a Pad (``_zero_pad_amounts``). Each chain
must fire as often as it has patterns, so that a chain that stopped folding cannot pass.
"""

from __future__ import annotations

from collections import Counter

import pytest

from convc.compiler import compile_text
from convc.lower import rewrites

SHORT, LONG = 200, 400

CHAINS = [
    # (id, the layers before the chain, the chain's link, target, each rewrite's firings a link)
    ("pad-into-conv", "", "ZeroPadding2D(1)\nConv2D(4, 3)\n", "portable", {"pad_into_conv": 1}),
    (
        "pad-into-max-pool",
        'Conv2D(4, 1, activation="relu")\n',  # a Relu before the first Pad
        "ZeroPadding2D(1)\nMaxPooling2D(3, strides=1)\nReLU()\n",
        "ort",
        {"pad_into_max_pool": 1},
    ),
    (
        "pad-and-crop-cancel",
        "Conv2D(4, 1)\n",
        "ZeroPadding2D(1)\nCropping2D(1)\n",
        "portable",
        {"pad_and_slice": 1},
    ),
    (
        "pad-and-crop-then-conv",
        "",
        "ZeroPadding2D(2)\nCropping2D(1)\nConv2D(4, 3)\n",
        "portable",
        {"pad_and_slice": 1, "pad_into_conv": 1},
    ),
    (
        "pad-crop-pad-into-conv",
        "",
        "ZeroPadding2D(1)\nZeroPadding2D(((0, 1), (1, 0)))\nConv2D(4, (3, 2))\n"
        "Cropping2D(((0, 0), (0, 1)))\nConv2D(4, 1)\n",
        "ort",
        {"pad_into_conv": 2},
    ),
    (
        "batch-norm-chain",
        'Conv2D(4, 3, padding="same", use_bias=False)\n',
        "BatchNormalization()\n",
        "portable",
        {"batch_norm_into_conv": 1},
    ),
    (
        "global-pool",
        "Conv2D(4, 1)\n",
        "GlobalAveragePooling2D(keepdims=True)\nConv2D(4, 1)\n",
        "ort",
        {"global_pool": 1},
    ),
    (
        "flatten-transpose-into-dense",
        "",
        "Conv2D(2, 1)\nFlatten()\nDense(8)\nReshape((2, 2, 2))\n",
        "ort",
        {"flatten_transpose_into_dense": 1},
    ),
]


class CountingList(list):
    """A node list that counts the nodes its walks visit."""

    visits = 0

    def __iter__(self):
        for item in super().__iter__():
            CountingList.visits += 1
            yield item


def work(monkeypatch, text: str, **options) -> tuple[int, Counter]:
    """The nodes visited and Pads looked at while ``text`` is lowered and rewritten, and the
    firings of each rewrite."""
    fired: Counter = Counter()
    pads_seen = 0
    optimize, zero_pad_amounts = rewrites.optimize, rewrites._zero_pad_amounts

    def counted_optimize(em, graph_outputs):
        em.nodes = CountingList(em.nodes)
        done = optimize(em, graph_outputs)
        fired.update(rewrite.rewrite for rewrite in done)
        return done

    def counted_zero_pad_amounts(em, node):
        nonlocal pads_seen
        pads_seen += 1
        return zero_pad_amounts(em, node)

    monkeypatch.setattr(rewrites, "optimize", counted_optimize)
    monkeypatch.setattr(rewrites, "_zero_pad_amounts", counted_zero_pad_amounts)
    CountingList.visits = 0
    try:
        compile_text(text, **options)
    finally:
        monkeypatch.undo()
    return CountingList.visits + pads_seen, fired


@pytest.mark.parametrize(
    ("head", "link", "target", "firings"),
    [pytest.param(*chain[1:], id=chain[0]) for chain in CHAINS],
)
def test_a_chain_twice_as_long_costs_about_twice_as_much(monkeypatch, head, link, target, firings):
    counts = {}
    for n in (SHORT, LONG):
        visits, fired = work(
            monkeypatch, "Input(shape=(8, 8, 4))\n" + head + link * n, target=target
        )
        assert {name: fired[name] for name in firings} == {
            name: per * n for name, per in firings.items()
        }, fired
        counts[n] = visits
    assert counts[LONG] < 2.5 * counts[SHORT], counts


def test_conv_outputs_apart_from_adds_walk_the_graph_once(monkeypatch):
    """``convc check`` makes every layer's output a graph output; on the portable target a Conv
    whose output an Add reads then writes another name (``Target.conv_output_read_by_add``),
    which needs the Conv's readers, for each Conv."""
    counts = {}
    for n in (SHORT, LONG):
        text = "import keras\nfrom keras import layers\nx = keras.Input(shape=(4, 4, 2))\nh = x\n"
        text += 'h = layers.Add()([layers.Conv2D(2, 3, padding="same")(h), h])\n' * n
        text += "model = keras.Model(x, h)\n"
        counts[n], _ = work(monkeypatch, text, layer_outputs=True)
    assert counts[LONG] < 2.5 * counts[SHORT], counts


def test_a_long_chain_of_paddings_after_the_input_builds():
    """Whether the input reaches only convolutions through paddings and croppings is walked
    without recursion: 600 pairs of them ended in an internal RecursionError."""
    text = "Input(shape=(8, 8, 4))\n" + "ZeroPadding2D(1)\nCropping2D(1)\n" * 600 + "Conv2D(4, 3)\n"
    proto = compile_text(text)
    assert [node.op_type for node in proto.graph.node] == ["Transpose", "Conv", "Transpose"]
