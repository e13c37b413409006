import numpy as np
import pytest

from helpers import decode_predictions, imagenet_classes


def test_imagenet_classes_use_keras_style_labels():
    labels = {label for _, label in imagenet_classes()}
    assert {"Indian_elephant", "tabby", "military_uniform", "espresso"} <= labels
    assert imagenet_classes()[0] == ("n01440764", "tench")


def test_decode_predictions_best_first():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, 385], preds[0, 281] = 0.7, 0.2
    preds[1, 652] = 0.9
    out = decode_predictions(preds, top=2)
    assert out[0] == [("n02504013", "Indian_elephant", pytest.approx(0.7)), ("n02123045", "tabby", pytest.approx(0.2))]
    assert out[1][0][1] == "military_uniform"
