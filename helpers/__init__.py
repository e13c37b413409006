"""Helpers for the image-recognition tutorial series: one public API."""

import os

# Keep TensorFlow's C++ log lines out of notebooks and terminals unless asked for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .classify import Classification, classify  # noqa: E402
from .datasets import LabeledImages, build_texture_dataset, load_labeled_images  # noqa: E402
from .explain import activations, gradcam, integrated_gradients, occlusion, overlay, smoothgrad  # noqa: E402
from .features import Features, extract_features, load_features  # noqa: E402
from .images import ImageLoadError, edit, list_images, load_image, mosaic  # noqa: E402
from .labels import class_index, decode_predictions  # noqa: E402
from .models import Net, available_models, load_model, near_duplicate_threshold  # noqa: E402
from .plots import compare_explanations, overlay_heatmap, show_activations, show_predictions  # noqa: E402
from .similarity import SimilarityIndex, cosine_similarity, find_near_duplicates, rank_by_similarity  # noqa: E402
from .transfer import base_model, build_classifier, fine_tune, preprocessing_layer  # noqa: E402

__all__ = [
    "Classification", "classify",
    "LabeledImages", "build_texture_dataset", "load_labeled_images",
    "activations", "gradcam", "integrated_gradients", "occlusion", "overlay", "smoothgrad",
    "Features", "extract_features", "load_features",
    "ImageLoadError", "edit", "list_images", "load_image", "mosaic",
    "class_index", "decode_predictions",
    "Net", "available_models", "load_model", "near_duplicate_threshold",
    "compare_explanations", "overlay_heatmap", "show_activations", "show_predictions",
    "SimilarityIndex", "cosine_similarity", "find_near_duplicates", "rank_by_similarity",
    "base_model", "build_classifier", "fine_tune", "preprocessing_layer",
]
