"""New classes on a pretrained base: a frozen base with a new head, then fine-tuning its top.

Two Keras pitfalls are handled here, once:

- BatchNorm must stay in inference mode. The base is called with
  ``training=False``, so its BatchNorm layers use their ImageNet moving
  statistics and never update them, frozen or not; ``fine_tune`` also keeps
  their scale and offset frozen.
- Preprocessing must match the base. The model starts with a layer that does
  what ``net.preprocess`` does (built from the registry record's mean and std),
  so it takes 0-255 RGB images like every other function here, and a saved
  ``.keras`` file needs no custom code to reload.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .models import MODELS, Net

LOSS = "sparse_categorical_crossentropy"
# Adam's learning rate for a new head, whether the base is frozen or being fine-tuned.
HEAD_LEARNING_RATE = 1e-3


def preprocessing_layer(net: Net) -> layers.Layer:
    """A Keras layer that does what ``net.preprocess`` does, built from the same record.

    ``(pixel - mean) / std`` per channel is a ``Rescaling(1 / std, -mean / std)``.
    For the models that want BGR (ResNet50, VGG), reversing the channels as well
    takes a frozen 1x1 ``Dense`` layer (a 3x3 matrix and an offset). Both are plain
    Keras layers, so a saved model reloads without custom objects.

    Args:
        net: from ``load_model``.

    Returns:
        A layer named "preprocess" taking float32 (batch, h, w, 3), RGB 0-255.

    >>> preprocessing_layer(load_model(include_top=False)).get_config()["scale"]
    0.0078125
    """
    preprocessing = net.spec.preprocessing
    scale = 1 / np.array(preprocessing.std, dtype=np.float64)
    offset = -np.array(preprocessing.mean, dtype=np.float64) * scale
    if preprocessing.channels == "RGB":
        same = np.allclose(scale, scale[0]) and np.allclose(offset, offset[0])
        return layers.Rescaling(float(scale[0]) if same else scale.tolist(),
                                float(offset[0]) if same else offset.tolist(), name="preprocess")
    # Row i of the matrix: what one unit of RGB input channel i adds to each BGR output.
    matrix = np.diag(scale)[::-1]
    dense = layers.Dense(3, trainable=False, name="preprocess")
    dense.build((None, 3))
    dense.set_weights([matrix.astype(np.float32), offset.astype(np.float32)])
    return dense


def build_classifier(net, num_classes: int, dropout: float = 0.2,
                     learning_rate: float = HEAD_LEARNING_RATE) -> keras.Model:
    """A compiled classifier for new classes: preprocessing, the frozen base, a new head.

    ``image (0-255) -> preprocess -> base(training=False) -> average pool ->
    dropout -> dense softmax``. The base is a copy of ``net.model`` with all its
    weights frozen, so training the classifier changes neither it nor ``net``.
    It is compiled with Adam at ``learning_rate``, sparse categorical cross-entropy
    (integer labels) and accuracy: train it with ``train_head`` (fast, with early
    stopping) or ``model.fit``.

    Args:
        net: a headless model, from ``load_model(name, include_top=False)``.
        num_classes: how many classes the new head tells apart.
        dropout: fraction of the pooled features dropped while training.
        learning_rate: Adam's learning rate for the head.

    Returns:
        A functional ``keras.Model`` from float32 (batch, *net.input_size, 3),
        RGB 0-255, to class probabilities (batch, num_classes).

    >>> model = build_classifier(load_model(include_top=False), num_classes=3)
    >>> model.output.shape
    (None, 3)
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

    >>> base_model(build_classifier(load_model(include_top=False), num_classes=3)).name
    'efficientnet_lite0'
    """
    bases = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(bases) != 1:
        raise ValueError(f"{model.name}: expected one nested base model, as build_classifier makes, "
                         f"found {len(bases)}")
    return bases[0]


def _outputs(model: keras.Model, images: np.ndarray, batch_size: int):
    """``model``'s output(s) for the images as numpy, by direct calls in batches.

    Not ``model.predict``: each new model would trace a new function, and TensorFlow warns about retracing.
    """
    parts = [model(images[i:i + batch_size], training=False) for i in range(0, len(images), batch_size)]
    return keras.tree.map_structure(lambda *batches: np.concatenate([np.asarray(b) for b in batches]), *parts)


def _fit_on_cached(below: keras.Model, above: keras.Model, images, labels, validation_data, optimizer,
                   epochs: int, patience: int, batch_size: int) -> keras.callbacks.History:
    """Fit ``above`` on what the frozen ``below`` makes of the images, computed once.

    With validation data, stops once the validation loss has not improved for
    ``patience`` epochs and keeps the weights of the best epoch.
    """
    inputs = _outputs(below, images, batch_size)
    callbacks, validation = [], None
    if validation_data is not None:
        # A Dataset made once: given arrays, Keras builds a new pipeline for them in every epoch, which
        # costs more than evaluating a small head. The same batches, so the same losses.
        outputs = keras.tree.lists_to_tuples(_outputs(below, validation_data[0], batch_size))  # tuple: one per input
        validation = tf.data.Dataset.from_tensor_slices((outputs, np.asarray(validation_data[1]))).batch(batch_size)
        callbacks = [keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)]
    above.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])
    return above.fit(inputs, labels, epochs=epochs, batch_size=batch_size, validation_data=validation,
                     callbacks=callbacks, verbose=0)


def _head(model: keras.Model, x, first: str = "avg_pool"):
    """Apply the layers of ``build_classifier``'s head, from ``first`` on, to ``x``."""
    names = ["avg_pool", "dropout", "classes"]
    for name in names[names.index(first):]:
        x = model.get_layer(name)(x)
    return x


def train_head(model: keras.Model, images: np.ndarray, labels: np.ndarray,
               validation_data: tuple[np.ndarray, np.ndarray], learning_rate: float = HEAD_LEARNING_RATE,
               epochs: int = 200, patience: int = 10, batch_size: int = 16) -> keras.callbacks.History:
    """Train the new head on the frozen base to convergence, with early stopping.

    The base is frozen and runs in inference mode, so its pooled output for a
    photo is the same in every epoch: it is computed once, and the dropout and
    dense layers train on it alone. That is the training ``model.fit`` would do
    on the photos, at a fraction of the cost, so many epochs are cheap. Training
    stops once the validation loss has not improved for ``patience`` epochs, and
    the head keeps the weights of its best epoch. Never pass the test photos as
    validation data: the epoch is chosen by them.

    Args:
        model: from ``build_classifier``.
        images: float32 (N, *net.input_size, 3), RGB 0-255.
        labels: int (N,), class indices.
        validation_data: ``(images, labels)`` of photos kept out of training.
        learning_rate: Adam's learning rate for the head.
        epochs: the most epochs to run.
        patience: epochs without a lower validation loss before stopping.
        batch_size: photos per step.

    Returns:
        The ``History`` of the fit: ``history.history["val_loss"]`` has one value per epoch run.

    >>> model = build_classifier(load_model(include_top=False), num_classes=2)
    >>> images = np.stack([load_image(f"images/{name}.png", size=224) for name in ["brick", "grass"] * 2])
    >>> history = train_head(model, images, np.array([0, 1, 0, 1]), (images, np.array([0, 1, 0, 1])), epochs=3)
    >>> len(history.history["val_loss"])
    3
    """
    below = keras.Model(model.input, model.get_layer("avg_pool").output)
    pooled = keras.Input(below.output.shape[1:])
    above = keras.Model(pooled, _head(model, pooled, first="dropout"))
    optimizer = keras.optimizers.Adam(learning_rate)
    history = _fit_on_cached(below, above, images, labels, validation_data, optimizer, epochs, patience, batch_size)
    # The model's own optimizer now holds the head's training state, so a saved model reloads it as it is.
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])
    return history


def _two_rates(learning_rate: float, head_learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam at ``head_learning_rate`` for the head ("classes"), at ``learning_rate`` for the base."""
    rates = keras.optimizers.OptimizerMap(keras.optimizers.Adam(learning_rate),
                                          {"classes/.*": keras.optimizers.Adam(head_learning_rate)})
    return keras.optimizers.MultiOptimizer(rates)


def _split(base: keras.Model, start: int) -> tuple[keras.Model, keras.Model]:
    """The base as two models, cut where ``base.layers[start:]`` begin: (frozen part, trained part).

    The cut is every tensor that a layer before ``start`` makes and a layer
    from ``start`` on reads (one for most bases; four for InceptionV3's last block).
    """
    made_by = {id(layer.output): i for i, layer in enumerate(base.layers)}
    cut = {id(t): t for layer in base.layers[start:] for t in keras.tree.flatten(layer.input)
           if made_by.get(id(t), start) < start}
    tensors = list(cut.values())
    return keras.Model(base.input, tensors), keras.Model(tensors, base.output)


def fine_tune(model: keras.Model, images: np.ndarray, labels: np.ndarray, from_layer: str | None = None,
              learning_rate: float = 1e-5, head_learning_rate: float = HEAD_LEARNING_RATE, epochs: int = 10,
              batch_size: int = 16, validation_data: tuple[np.ndarray, np.ndarray] | None = None,
              patience: int = 3) -> keras.callbacks.History:
    """Train the top of the base together with the head: the base slowly, the head at its own rate.

    Unfreezes the base's layers from ``from_layer`` to its end, except
    BatchNormalization layers: their scale and offset stay frozen, and the base
    runs with ``training=False``, so their moving statistics stay too. Adam
    moves the base's weights at ``learning_rate`` (low, so the pretrained
    features change a little) and the head's at ``head_learning_rate`` (one
    optimizer for each, ``keras.optimizers.MultiOptimizer``). The layers below
    ``from_layer`` stay frozen, so their output is computed once and the epochs
    run only the top. With ``validation_data``, training stops once the
    validation loss has not improved for ``patience`` epochs and keeps the
    weights of the best epoch. Train the head first (``train_head``): a random
    head would send large gradients into the base. Afterwards the model is
    compiled with the same two rates, so ``model.fit`` goes on the same way.

    Args:
        model: from ``build_classifier``, its head trained.
        images: float32 (N, *net.input_size, 3), RGB 0-255.
        labels: int (N,), class indices.
        from_layer: the first base layer to train. None: the registry's
            ``fine_tune_from`` for the base, its last block ("block15_expand"
            for Lite0), which with the layers after it makes the top.
        learning_rate: Adam's learning rate for the base's layers.
        head_learning_rate: Adam's learning rate for the head's dense layer.
        epochs: the most epochs to run.
        batch_size: photos per step.
        validation_data: ``(images, labels)`` kept out of training, for early stopping.
        patience: epochs without a lower validation loss before stopping.

    Returns:
        The ``History`` of the fit.

    >>> model = build_classifier(load_model(include_top=False), num_classes=2)
    >>> images = np.stack([load_image(f"images/{name}.png", size=224) for name in ["brick", "grass"] * 2])
    >>> head = train_head(model, images, np.array([0, 1, 0, 1]), (images, np.array([0, 1, 0, 1])), epochs=2)
    >>> len(fine_tune(model, images, np.array([0, 1, 0, 1]), epochs=1).history["loss"])
    1
    """
    base = base_model(model)
    if from_layer is None:
        if base.name not in MODELS:
            raise ValueError(f"{base.name} is not a registry model: pass from_layer=, the name of the first "
                             f"layer to train; the base's last layers are "
                             f"{', '.join(layer.name for layer in base.layers[-8:])}")
        from_layer = MODELS[base.name].fine_tune_from
    names = [layer.name for layer in base.layers]
    if from_layer not in names:
        raise ValueError(f"from_layer={from_layer!r} is not a layer of {base.name}; "
                         f"its last layers are {', '.join(names[-8:])}")
    base.trainable = True
    start = names.index(from_layer)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
    frozen, top = _split(base, start)
    below = keras.Model(model.input, frozen(model.get_layer("preprocess").output, training=False))
    cut = [keras.Input(t.shape[1:]) for t in keras.tree.flatten(frozen.output)]
    # training=False: BatchNorm in the top keeps using its moving statistics, as in the whole model.
    above = keras.Model(cut, _head(model, top(cut, training=False)))
    history = _fit_on_cached(below, above, images, labels, validation_data,
                             _two_rates(learning_rate, head_learning_rate), epochs, patience, batch_size)
    model.compile(optimizer=_two_rates(learning_rate, head_learning_rate), loss=LOSS, metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)  # so that a saved model's optimizer state matches on reload
    return history
