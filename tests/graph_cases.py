"""Functional-graph cases, as .conv texts that are also Python Keras runs.

Each case aims at something a graph adds to a stack: skips and merges of every kind, shared
layers, several inputs and outputs, broadcasting and rank alignment at merges, Concatenate on
any axis, mixed data formats meeting at a merge, the lowercase merge helpers, and the
activation layers a residual block needs after its merge.
"""

from __future__ import annotations

import pytest


def graph(id_: str, text: str):
    return pytest.param(text.strip() + "\n", id=id_)


GRAPH_CASES = [
    graph(
        "unet-skip-concat",
        """
inputs = Input(shape=(16, 16, 3), name="image")
x = Conv2D(8, 3, padding="same", activation="relu")(inputs)
s1 = Conv2D(8, 3, padding="same", activation="relu")(x)
x = Conv2D(16, 3, strides=2, padding="same", activation="relu")(s1)
x = Conv2DTranspose(8, 3, strides=2, padding="same")(x)
x = Concatenate()([x, s1])
outputs = Conv2D(1, 1, activation="sigmoid", name="mask")(x)
model = keras.Model(inputs, outputs)
""",
    ),
    graph(
        "resnet-strided-shortcut",
        """
inputs = keras.Input(shape=(12, 12, 4))
x = layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
x = layers.ReLU()(x)
x = layers.Conv2D(8, 3, padding="same")(x)
shortcut = layers.Conv2D(8, 1, strides=2)(inputs)
x = layers.Add()([x, shortcut])
x = layers.Activation("relu")(x)
y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
y = layers.Conv2D(8, 3, padding="same")(y)
y = layers.add([y, x])
outputs = layers.ReLU()(y)
model = keras.Model(inputs=inputs, outputs=outputs)
""",
    ),
    graph(
        "wavenet-gated",
        """
inputs = Input(shape=(32, 2))
x = Conv1D(8, 1)(inputs)
skips = []
t1 = Conv1D(8, 2, dilation_rate=1, padding="causal", activation="tanh")(x)
g1 = Conv1D(8, 2, dilation_rate=1, padding="causal", activation="sigmoid")(x)
z1 = Multiply()([t1, g1])
skip1 = Conv1D(8, 1)(z1)
x = Add()([x, Conv1D(8, 1)(z1)])
t2 = Conv1D(8, 2, dilation_rate=2, padding="causal", activation="tanh")(x)
g2 = Conv1D(8, 2, dilation_rate=2, padding="causal", activation="sigmoid")(x)
z2 = Multiply()([t2, g2])
skip2 = Conv1D(8, 1)(z2)
s = Add()([skip1, skip2])
s = Activation("relu")(s)
outputs = Conv1D(3, 1, activation="softmax")(s)
model = keras.Model(inputs, outputs)
""",
    ),
    graph(
        "two-inputs-two-outputs",
        """
a = Input(shape=(10, 10, 3), name="left")
b = Input(shape=(10, 10, 2), name="right")
x = Conv2D(4, 3, padding="same")(a)
y = Conv2D(4, 3, padding="same")(b)
both = Concatenate(axis=-1)([x, y])
diff = Subtract()([x, y])
score = Conv2D(1, 3, name="score")(both)
model = keras.Model([a, b], [diff, score])
""",
    ),
    graph(
        "shared-layer",
        """
a = Input(shape=(9, 9, 3))
b = Input(shape=(9, 9, 3))
conv = Conv2D(5, 3, padding="same", activation="relu")
a2 = conv(a)
b2 = conv(b)
head = Conv2D(2, 1)
out = Maximum()([head(a2), head(b2)])
model = keras.Model(inputs=[a, b], outputs=out)
""",
    ),
    graph(
        "shared-layer-other-size",
        """
a = Input(shape=(9, 9, 3))
b = Input(shape=(5, 7, 3))
conv = Conv2D(4, 3, padding="same")
model = keras.Model([a, b], [conv(a), conv(b)])
""",
    ),
    graph(
        "squeeze-excite-broadcast",
        """
inputs = Input(shape=(6, 6, 4))
x = Conv2D(4, 3, padding="same", activation="relu")(inputs)
s = Conv2D(4, 6, activation="sigmoid")(x)
x = Multiply()([x, s])
model = keras.Model(inputs, x)
""",
    ),
    graph(
        "rank-alignment",
        """
image = Input(shape=(5, 6, 3))
row = Input(shape=(6, 3))
r = Conv1D(3, 1)(row)
x = Add()([Conv2D(3, 1)(image), r])
y = Minimum()([r, Conv2D(3, 1)(image)])
model = keras.Model([image, row], [x, y])
""",
    ),
    graph(
        "every-elementwise-merge-three-inputs",
        """
inputs = Input(shape=(7, 7, 3))
a = Conv2D(4, 3, padding="same")(inputs)
b = Conv2D(4, 3, padding="same")(inputs)
c = Conv2D(4, 1)(inputs)
add = Add()([a, b, c])
mul = Multiply()([a, b, c])
avg = Average()([a, b, c])
hi = Maximum()([a, b, c])
lo = Minimum()([a, b, c])
sub = Subtract()([a, c])
model = keras.Model(inputs, [add, mul, avg, hi, lo, sub])
""",
    ),
    graph(
        "lowercase-helpers",
        """
from keras import layers
inputs = keras.Input(shape=(8, 8, 2))
a = layers.Conv2D(3, 3, padding="same")(inputs)
b = layers.Conv2D(3, 1)(inputs)
x = layers.add([a, b])
x = layers.subtract([x, b])
x = layers.multiply([x, a])
x = layers.average([x, a, b])
x = layers.maximum([x, b])
x = layers.minimum([x, a])
x = layers.concatenate([x, a], axis=1)
model = keras.Model(inputs, x)
""",
    ),
    graph(
        "concatenate-spatial-and-negative-axes",
        """
inputs = Input(shape=(6, 5, 3))
a = Conv2D(3, 3, padding="same")(inputs)
b = Conv2D(3, (2, 1))(inputs)
h = Concatenate(axis=1)([a, b])
w = Concatenate(axis=-2)([a, Conv2D(3, (1, 2))(inputs)])
c = Concatenate(axis=3)([a, inputs])
model = keras.Model(inputs, [h, w, c])
""",
    ),
    graph(
        "channels-first-concat",
        """
inputs = Input(shape=(3, 8, 8))
a = Conv2D(4, 3, padding="same", data_format="channels_first")(inputs)
b = Conv2D(2, 1, data_format="channels_first")(inputs)
x = Concatenate(axis=1)([a, b])
x = UpSampling2D(data_format="channels_first")(x)
model = keras.Model(inputs, x)
""",
    ),
    graph(
        "mixed-formats-meet-at-merge",
        """
inputs = Input(shape=(8, 8, 8))
a = Conv2D(8, 3, padding="same")(inputs)
b = Conv2D(8, 3, padding="same", data_format="channels_first")(inputs)
x = Add()([a, b])
y = Concatenate(axis=-1)([a, b])
model = keras.Model(inputs, [x, y])
""",
    ),
    graph(
        "dict-outputs",
        """
inputs = Input(shape=(8, 8, 3))
x = Conv2D(4, 3, padding="same")(inputs)
model = keras.Model(inputs, {"zeta": Conv2D(2, 1)(x), "alpha": Conv2D(3, 1, name="head")(x)})
""",
    ),
    graph(
        "relu-and-activation-layers",
        """
inputs = Input(shape=(6, 6, 3))
x = Conv2D(6, 3, padding="same")(inputs)
r1 = ReLU()(x)
r2 = ReLU(max_value=6.0)(x)
r3 = ReLU(negative_slope=0.2)(x)
r4 = ReLU(threshold=0.5)(x)
r5 = ReLU(max_value=1.5, negative_slope=0.3, threshold=0.4)(x)
r6 = ReLU(max_value=0.2, threshold=0.5)(x)
a1 = Activation("softmax")(x)
a2 = Activation("gelu")(x)
a3 = Activation(None)(x)
a4 = Activation("glu")(x)
model = keras.Model(inputs, [r1, r2, r3, r4, r5, r6, a1, a2, a3, a4])
""",
    ),
    graph(
        "activation-softmax-channels-first",
        """
inputs = Input(shape=(3, 6, 5))
x = Conv2D(4, 3, padding="same", data_format="channels_first")(inputs)
x = Activation("softmax")(x)
model = keras.Model(inputs, x)
""",
    ),
    graph(
        "output-not-last-and-branch-order",
        """
inputs = Input(shape=(8, 8, 2))
late = Conv2D(3, 1, name="constructed_first")
x = Conv2D(3, 3, padding="same")(inputs)
y = late(inputs)
deep = Conv2D(3, 3, padding="same")(Conv2D(3, 3, padding="same")(x))
z = Add()([deep, y])
model = keras.Model(inputs, [z, x])
""",
    ),
    graph(
        "3d-residual",
        """
inputs = Input(shape=(6, 6, 6, 2))
x = Conv3D(4, 3, padding="same", activation="relu")(inputs)
x = Add()([x, Conv3D(4, 1)(inputs)])
x = Conv3DTranspose(2, 2, strides=2)(x)
x = Concatenate()([x, UpSampling3D()(inputs)])
model = keras.Model(inputs, x)
""",
    ),
    graph(
        "nested-apply-inline",
        """
inputs = Input(shape=(8, 8, 3))
outputs = Add()([Conv2D(4, 3, padding="same")(inputs), Conv2D(4, 1)(ZeroPadding2D(0)(inputs))])
model = keras.Model(inputs, outputs)
""",
    ),
    graph(
        "pad-shared-by-two-consumers",
        """
inputs = Input(shape=(8, 8, 3))
p = ZeroPadding2D(1)(inputs)
a = Conv2D(4, 3)(p)
b = Cropping2D(1)(p)
model = keras.Model(inputs, [a, b])
""",
    ),
    graph(
        "classifier-two-heads-share-flatten",
        """
image = Input(shape=(12, 12, 3), name="image")
x = Rescaling(0.5, offset=-1.0)(image)
x = Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
x = Conv2D(8, 3, strides=2, padding="same")(x)
x = LeakyReLU()(x)
f = Flatten()(x)
scores = Dense(5, activation="softmax", name="scores")(Dropout(0.5)(f))
boxes = Dense(4, name="boxes")(f)
model = keras.Model(image, [scores, boxes])
""",
    ),
    graph(
        "shared-dense-on-two-ranks",
        """
a = Input(shape=(7,))
b = Input(shape=(5, 7))
dense = Dense(3, activation="tanh")
model = keras.Model([a, b], [dense(a), dense(b)])
""",
    ),
    graph(
        "permute-meets-its-input",
        """
image = Input(shape=(6, 6, 3))
a = Conv2D(4, 1)(image)
b = Permute((2, 1, 3))(a)
c = Add()([a, b])
d = Permute((3, 1, 2))(c)
e = Softmax(axis=(2, 3))(d)
model = keras.Model(image, [c, e])
""",
    ),
    graph(
        "permute-shares-its-input-tensor",
        """
image = Input(shape=(5, 6, 3))
a = Conv2D(4, 1)(image)
b = Permute((2, 1, 3))(a)
model = keras.Model(image, [a, b, Flatten()(a), Flatten()(b)])
""",
    ),
    graph(
        "prelu-and-normalization-after-merge",
        """
image = Input(shape=(8, 8, 3))
n = Normalization(axis=-1, mean=[0.5, 1.0, 1.5], variance=[1.0, 2.0, 4.0])(image)
a = Conv2D(6, 3, padding="same")(n)
b = Conv2D(6, 1)(n)
x = Add()([a, b])
x = PReLU(shared_axes=[1, 2])(x)
x = ELU(0.5)(x)
x = Resizing(5, 11)(x)
y = CenterCrop(4, 4)(x)
model = keras.Model(image, [x, y])
""",
    ),
    graph(
        "channels-first-classifier",
        """
image = Input(shape=(3, 10, 10))
x = Conv2D(6, 3, strides=2, data_format="channels_first", activation="relu")(image)
x = SpatialDropout2D(0.2, data_format="channels_first")(x)
x = Flatten(data_format="channels_first")(x)
x = Dense(8)(x)
x = Reshape((2, 4))(x)
outputs = Dense(3, activation="softmax")(x)
model = keras.Model(image, outputs)
""",
    ),
    graph(
        "sequential-list",
        """
model = keras.Sequential([
    keras.Input(shape=(10, 10, 3)),
    layers.Conv2D(4, 3, activation="relu"),
    layers.ReLU(max_value=6.0),
    layers.Conv2D(2, 3),
], name="stack")
""",
    ),
    graph(
        "resnet-batch-norm-block",
        """
inputs = keras.Input(shape=(10, 10, 3))
x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
x = layers.BatchNormalization()(x)
x = layers.ReLU()(x)
y = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
y = layers.BatchNormalization()(y)
y = layers.Activation("relu")(y)
y = layers.Conv2D(8, 3, padding="same", use_bias=False)(y)
y = layers.BatchNormalization()(y)
y = layers.Add()([y, x])
y = layers.ReLU()(y)
s = layers.Conv2D(16, 1, strides=2, use_bias=False)(y)
s = layers.BatchNormalization()(s)
z = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(y)
z = layers.BatchNormalization()(z)
z = layers.ReLU()(z)
z = layers.Conv2D(16, 3, padding="same", use_bias=False)(z)
z = layers.BatchNormalization()(z)
z = layers.add([z, s])
outputs = layers.ReLU()(z)
model = keras.Model(inputs, outputs)
""",
    ),
    graph(
        "batch-norm-conv-read-twice-and-output",
        """
inputs = Input(shape=(8, 8, 3))
c = Conv2D(4, 3, padding="same")(inputs)
n = BatchNormalization()(c)
m = Add()([n, c])
d = Conv2D(4, 1)(m)
e = BatchNormalization(name="after_output")(d)
model = keras.Model(inputs, [d, e])
""",
    ),
    graph(
        "normalizations-after-merges-channels-first",
        """
keras.config.set_image_data_format("channels_first")
inputs = Input(shape=(4, 6, 6))
a = Conv2D(8, 3, padding="same")(inputs)
b = Conv2D(8, 1)(inputs)
x = Add()([a, b])
x = BatchNormalization(axis=1)(x)
x = GroupNormalization(4, axis=1)(x)
y = Concatenate(axis=1)([x, a])
y = LayerNormalization(axis=[1, 2, 3])(y)
y = UnitNormalization(axis=1)(y)
outputs = Conv2D(2, 1)(y)
model = keras.Model(inputs, outputs)
""",
    ),
    graph(
        "squeeze-excite-pooling",
        """
inputs = Input(shape=(9, 10, 3))
x = Conv2D(8, 3, padding="same", activation="relu")(inputs)
x = MaxPooling2D(3, 2, padding="same")(x)
s = GlobalAveragePooling2D(keepdims=True)(x)
s = Conv2D(2, 1, activation="relu")(s)
s = Conv2D(8, 1, activation="sigmoid")(s)
x = Multiply()([x, s])
y = AveragePooling2D(2)(x)
logits = GlobalMaxPooling2D()(Conv2D(4, 1)(y))
features = GlobalAveragePooling2D()(x)
model = keras.Model(inputs, [logits, features, y])
""",
    ),
    graph(
        "applications-layers-residual-scale",
        """
inputs = Input(shape=(8, 8, 6))
x = Conv2D(6, 3, padding="same", activation="relu")(inputs)
r = Conv2D(6, 1)(x)
x = CustomScaleLayer(0.17)([x, r])
x = LayerNormalization(epsilon=1e-6)(x)
x = Dense(12)(x)
x = LayerScale(0.5, 12)(x)
outputs = Add()([Dense(12)(inputs), x])
model = keras.Model(inputs, outputs)
""",
    ),
]
