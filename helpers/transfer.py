"""New classes on a pretrained base: a frozen base with a new head, then fine-tuning its top.

Two Keras pitfalls are handled here, once:

- BatchNorm must stay in inference mode. The base is called with
  ``training=False``, so its BatchNorm layers use their ImageNet moving
  statistics and never update them, frozen or not; ``fine_tune`` also keeps
  their scale and offset frozen.
- Preprocessing must match the base. The model starts with a layer that does
  what ``net.preprocess`` does, so it takes 0-255 RGB images like every other
  function here, and a saved ``.keras`` file needs no custom code to reload.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from . import efficientnet_lite

LOSS = "sparse_categorical_crossentropy"


def preprocessing_layer(net) -> layers.Layer:
    """A Keras layer equal to ``net.preprocess``, read off the function itself.

    Every model's preprocessing maps each pixel's RGB values by the same affine
    map: (x - 127) / 128 for EfficientNet-Lite, x / 127.5 - 1 for Xception,
    RGB to BGR minus the ImageNet mean for ResNet50 and VGG. Applying
    ``net.preprocess`` to black and to pure red, green and blue recovers that
    map. A per-channel scale and offset becomes a ``Rescaling`` layer; a map
    that mixes channels (the BGR swap) a frozen 1x1 ``Dense`` layer. Both are
    plain Keras layers, so a saved model reloads without custom objects.

    Args:
        net: from ``load_model``.

    Returns:
        A layer named "preprocess" taking float32 (batch, h, w, 3), 0-255.

    >>> preprocessing_layer(load_model(include_top=False)).get_config()["scale"]
    0.0078125
    """
    probes = np.concatenate([np.zeros((1, 3)), 255 * np.eye(3)]).astype(np.float32)
    out = np.asarray(net.preprocess(probes[None, :, None, :].copy()), dtype=np.float64)[0, :, 0, :]
    offset = out[0]
    matrix = (out[1:] - offset) / 255  # row i: the output for one unit of input channel i
    check = np.random.default_rng(0).uniform(0, 255, (1, 16, 1, 3)).astype(np.float32)
    expected = np.asarray(net.preprocess(check.copy()), dtype=np.float64)
    if not np.allclose(check.astype(np.float64) @ matrix + offset, expected, atol=1e-4):
        raise ValueError(f"{net.name}: net.preprocess is not one affine map per pixel, so no Rescaling or Dense "
                         f"layer can do it; give the model a preprocessing layer of its own")
    if np.allclose(matrix, np.diag(np.diag(matrix))):
        scale = np.diag(matrix)
        same = np.allclose(scale, scale[0]) and np.allclose(offset, offset[0])
        return layers.Rescaling(float(scale[0]) if same else scale.tolist(),
                                float(offset[0]) if same else offset.tolist(), name="preprocess")
    dense = layers.Dense(3, trainable=False, name="preprocess")
    dense.build((None, 3))
    dense.set_weights([matrix.astype(np.float32), offset.astype(np.float32)])
    return dense


def build_classifier(net, num_classes: int, dropout: float = 0.2, learning_rate: float = 1e-3) -> keras.Model:
    """A compiled classifier for new classes: preprocessing, the frozen base, a new head.

    ``image (0-255) -> preprocess -> base(training=False) -> average pool ->
    dropout -> dense softmax``. The base is a copy of ``net.model`` with all its
    weights frozen, so training the classifier changes neither it nor ``net``.
    It is compiled with Adam at ``learning_rate``, sparse categorical cross-entropy
    (integer labels) and accuracy: train it with ``model.fit``.

    Args:
        net: a headless model, from ``load_model(name, include_top=False)``.
        num_classes: how many classes the new head tells apart.
        dropout: fraction of the pooled features dropped while training.
        learning_rate: Adam's learning rate for the head.

    Returns:
        A functional ``keras.Model`` from float32 (batch, *net.input_size, 3),
        RGB 0-255, to class probabilities (batch, num_classes).

    >>> model = build_classifier(load_model(include_top=False), num_classes=3)
    >>> model.fit(images, labels, epochs=3, verbose=0)
    """
    if len(net.model.output.shape) != 4:
        raise ValueError(f"{net.name} outputs shape {tuple(net.model.output.shape)}, not feature maps: "
                         f"load it with load_model({net.name!r}, include_top=False)")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    base = keras.models.clone_model(net.model)
    base.set_weights(net.model.get_weights())
    base.trainable = False
    inputs = keras.Input((*net.input_size, 3), name="image")
    x = preprocessing_layer(net)(inputs)
    # training=False: BatchNorm uses its moving statistics and never updates them, even once unfrozen.
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name=f"{net.name}_classifier")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSS, metrics=["accuracy"])
    return model


def base_model(model: keras.Model) -> keras.Model:
    """The pretrained base inside a model from ``build_classifier``.

    >>> base_model(model).name
    'efficientnet_lite0'
    """
    bases = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(bases) != 1:
        raise ValueError(f"{model.name}: expected one nested base model, as build_classifier makes, "
                         f"found {len(bases)}")
    return bases[0]


def _default_from_layer(base: keras.Model) -> str:
    """The last block of an EfficientNet-Lite: with the head conv after it, its top."""
    if base.name not in efficientnet_lite.STAGES:
        raise ValueError(f"{base.name}: pass from_layer=, the name of the first layer to train; "
                         f"the base's last layers are {', '.join(layer.name for layer in base.layers[-8:])}")
    blocks = sum(repeats for *_, repeats in efficientnet_lite.STAGES[base.name])
    return f"block{blocks - 1}_expand"


def fine_tune(model: keras.Model, images: np.ndarray, labels: np.ndarray, from_layer: str | None = None,
              learning_rate: float = 1e-5, epochs: int = 2, batch_size: int = 16,
              validation_data: tuple[np.ndarray, np.ndarray] | None = None) -> keras.callbacks.History:
    """Train the top of the base together with the head, at a low learning rate.

    Unfreezes the base's layers from ``from_layer`` to its end, except
    BatchNormalization layers: their scale and offset stay frozen, and the base
    runs with ``training=False``, so their moving statistics stay too. Then
    recompiles with Adam at ``learning_rate`` (low, so the pretrained weights
    move a little) and fits. Train the head first (``model.fit``): a random
    head would send large gradients into the base.

    Args:
        model: from ``build_classifier``, its head trained.
        images: float32 (N, *net.input_size, 3), RGB 0-255.
        labels: int (N,), class indices.
        from_layer: the first base layer to train. None: for EfficientNet-Lite
            its last block ("block15_expand" for Lite0), which with the head
            conv after it makes the top; for other bases, name one.
        learning_rate: Adam's learning rate.
        epochs, batch_size, validation_data: as for ``model.fit``.

    Returns:
        The ``History`` of the fit.

    >>> history = fine_tune(model, train.images, train.labels, epochs=2)
    """
    base = base_model(model)
    from_layer = from_layer or _default_from_layer(base)
    names = [layer.name for layer in base.layers]
    if from_layer not in names:
        raise ValueError(f"from_layer={from_layer!r} is not a layer of {base.name}; "
                         f"its last layers are {', '.join(names[-8:])}")
    base.trainable = True
    start = names.index(from_layer)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSS, metrics=["accuracy"])
    return model.fit(images, labels, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                     verbose=0)
