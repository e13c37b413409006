import pytest

from helpers import decode_predictions, load_image, load_model
from support import IMAGES


def _top(net, name, k=5):
    batch = load_image(IMAGES / name, size=net.input_size)[None]
    return [label for _, label, _ in decode_predictions(net.model.predict(net.preprocess(batch), verbose=0), top=k)[0]]


def test_lite0_recognises_real_photos(lite0):
    assert _top(lite0, "chelsea.png")[0] in {"tabby", "tiger_cat", "Egyptian_cat"}
    assert _top(lite0, "coffee.png")[0] == "espresso"
    assert "military_uniform" in _top(lite0, "grace_hopper.jpg", k=3)


@pytest.mark.parametrize("name, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_larger_lite_models_load_offline_and_recognise_coffee(name, size):
    net = load_model(name)
    assert net.input_size == (size, size)
    image = load_image(IMAGES / "coffee.png", size=net.input_size)
    probs = net.model.predict(net.preprocess(image[None]), verbose=0)
    assert decode_predictions(probs, top=1)[0][0][1] == "espresso"
