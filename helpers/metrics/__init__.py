"""Every measure of the book, each with its paper's equation number where it has one.

- `segmentation`: pixel counts, confusion matrices, IoU, F1 and accuracy of label maps;
- `activeness`: paper 000's activeness map (Eq. 3) and ACS of a sliced structure code;
- `distributions`: Fréchet distance and perceptual path length in a feature space the caller chooses;
- `separability`: DCI and linear / non-linear separability of attributes in latent codes (paper 003, Table 1);
- `reconstruction`: an image's reconstruction inside a region (L1) and its sharpness against the original;
- `geometry`: a reconstructed depth map against the true one (unsup3d's SIDE and MAD: chapter 4);
- `edits`: what an edit does to a label map (validity, adaptation, diversity, monotonicity: paper 001) and where an
  image edit's change lands (papers 001 and 002).

Every public function is also reachable as `helpers.metrics.<name>`.
"""
from .activeness import activeness_compaction_score, activeness_map
from .distributions import feature_frechet_distance, feature_statistics, frechet_distance, path_length_w_end
from .edits import (area_range, centroids, change_inside_share, dilate, iou, l1_per_image, mean_pairwise_iou_distance,
                    other_parts_change, part_areas, share_in_range, spearman, stray_pixels)
from .geometry import mean_angle_deviation, scale_invariant_depth_error
from .reconstruction import gradient_energy, region_l1, sharpness_ratio
from .segmentation import (class_frequencies, class_pixel_counts, class_support, confusion_matrix, f1_per_class,
                           iou_per_class, pixel_accuracy)
from .separability import (dci, dci_from_importances, fit_linear_svms, linear_separability,
                           nonlinear_separability)

__all__ = [
    "activeness_map", "activeness_compaction_score",
    "feature_statistics", "frechet_distance", "feature_frechet_distance", "path_length_w_end",
    "dilate", "stray_pixels", "part_areas", "area_range", "share_in_range", "other_parts_change", "iou",
    "mean_pairwise_iou_distance", "centroids", "spearman", "change_inside_share", "l1_per_image",
    "class_pixel_counts", "class_frequencies", "confusion_matrix", "iou_per_class", "f1_per_class", "pixel_accuracy",
    "class_support",
    "scale_invariant_depth_error", "mean_angle_deviation",
    "region_l1", "gradient_energy", "sharpness_ratio",
    "dci_from_importances", "dci", "fit_linear_svms", "linear_separability", "nonlinear_separability",
]
