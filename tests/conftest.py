import pytest

from support import tiny_spec


@pytest.fixture
def tiny_net(tmp_path_factory, monkeypatch):
    """Makes small Nets in the image of the real ones (conv, BatchNorm, ReLU, twice, on a
    32x32 input): ``tiny_net()`` with a 5-class softmax top, ``tiny_net(top=False)``
    headless, ``tiny_net(seed=1)`` with other random weights. Not in the registry: their
    conversions go to a cache of the test's own, never to the user's."""
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path_factory.mktemp("cache")))
    import keras
    from keras import layers

    from helpers import Net

    def make(top: bool = True, seed: int = 0):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((32, 32, 3), name="image")
        x = inputs
        for i, filters in enumerate([4, 8]):
            x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = layers.ReLU(name=f"conv{i}_relu")(x)
        if top:
            x = layers.Dense(5, activation="softmax", name="predictions")(layers.GlobalAveragePooling2D()(x))
        return Net(keras.Model(inputs, x, name="tiny"), tiny_spec())

    return make


@pytest.fixture(scope="session")
def lite0():
    from helpers import load_model

    return load_model()


@pytest.fixture(scope="session")
def lite0_headless():
    from helpers import load_model

    return load_model(include_top=False)
