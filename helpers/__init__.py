"""Helpers for the image-recognition tutorial series: one public API.

The modules follow the lessons: images, models, labels, classify (01), features (02),
similarity with matching (03), explain with graph (04, 05), faithfulness (05), transfer (06),
trust (07), scale (08), plots for all of them. helpers.engine is the fast path (LiteRT, int8, worker threads),
used where asked: backend="litert"/"fastest", precision="int8", the command line.
"""

from .quiet import import_tensorflow_quietly

# First, before any module imports TensorFlow: its start-up lines would reach terminals and notebooks.
import_tensorflow_quietly()

from .classify import Classification, classify, predict_views  # noqa: E402
from .datasets import LabeledImages, list_labeled_images, load_labeled_images  # noqa: E402
from .explain import EXPLAINERS, activations, gradcam, integrated_gradients, occlusion, smoothgrad  # noqa: E402
from .faithfulness import (Curve, RandomizationCheck, deletion_curve, insertion_curve, random_heatmap,  # noqa: E402
                           randomization_check)
from .features import Features, extract_features, load_features  # noqa: E402
from .images import (VIEWS, ImageLoadError, ImageSource, crop_views, edit, list_images, load_image,  # noqa: E402
                     mosaic, overlay)
from .labels import decode_predictions, imagenet_classes  # noqa: E402
from .models import (DEFAULT_MODEL, MODELS, ModelSpec, Net, Preprocessing, available_models, load_model,  # noqa: E402
                     model_spec)
from .plots import (compare_explanations, heatmap_colorbar, overlay_heatmap, show_activations,  # noqa: E402
                    show_predictions, show_reliability)
from .similarity import SimilarityIndex, cosine_similarity, find_near_duplicates, rank_by_similarity  # noqa: E402
from .matching import LocalFeatures, count_inliers, find_edited_copies, local_features  # noqa: E402
from .transfer import base_model, build_classifier, fine_tune, preprocessing_layer, train_head  # noqa: E402
from .trust import (Rejection, Reliability, acceptance_threshold, apply_temperature,  # noqa: E402
                    expected_calibration_error, fit_temperature, rejection_quality, reliability_table)
# Ray and FAISS are an optional extra: helpers.scale imports them only when called.
from .scale import (FaissIndex, FeatureExtractor, build_index, extract_features_ray, load_index,  # noqa: E402
                    read_parquet, recall_at_k, start_ray, write_parquet)

__all__ = [
    "Classification", "classify", "predict_views",
    "LabeledImages", "list_labeled_images", "load_labeled_images",
    "EXPLAINERS", "activations", "gradcam", "integrated_gradients", "occlusion", "smoothgrad",
    "Curve", "RandomizationCheck", "deletion_curve", "insertion_curve", "random_heatmap", "randomization_check",
    "Features", "extract_features", "load_features",
    "VIEWS", "ImageLoadError", "ImageSource", "crop_views", "edit", "list_images", "load_image", "mosaic", "overlay",
    "decode_predictions", "imagenet_classes",
    "DEFAULT_MODEL", "MODELS", "ModelSpec", "Net", "Preprocessing", "available_models", "load_model", "model_spec",
    "compare_explanations", "heatmap_colorbar", "overlay_heatmap", "show_activations", "show_predictions",
    "show_reliability",
    "SimilarityIndex", "cosine_similarity", "find_near_duplicates", "rank_by_similarity",
    "LocalFeatures", "count_inliers", "find_edited_copies", "local_features",
    "base_model", "build_classifier", "fine_tune", "preprocessing_layer", "train_head",
    "Rejection", "Reliability", "acceptance_threshold", "apply_temperature",
    "expected_calibration_error", "fit_temperature", "rejection_quality", "reliability_table",
    "FaissIndex", "FeatureExtractor", "build_index", "extract_features_ray", "load_index",
    "read_parquet", "recall_at_k", "start_ray", "write_parquet",
]
