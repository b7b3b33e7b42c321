"""Images: folders of PNG/JPEG files, ``.npy``/``.npz`` arrays, MNIST IDX files, and bundled digit sets.

Two spaces, as for every domain:

- encoded (what the engine trains on): float32 ``[N, C, H, W]`` in [-1, 1], ``2 * pixel / 255 - 1``;
- the user's space (``decode``, ``Dataset.holdout``, ``save_samples``, ``evaluate``, ``plot``):
  uint8 ``[N, H, W, C]``.

The files, each importing only the ones above it (never the package itself):

- ``arrays``: pure array helpers: any image array to the encoded tensor and back, image grids;
- ``files``: reading folders, ``.npy``/``.npz``, IDX files and the built-in sets' raw data; digests;
- ``stacked``: Stacked MNIST, the 1,000-mode set made of ``files.read_mnist`` digits, and its scores;
- ``sources``: the built-in sets' registry and ``load_images``, one entry point for every source;
- ``tasks``: what an image-conditional run (``data.task``) is conditioned on, pairs, condition files;
- ``pictures``: PIL images and captioned PNG grids;
- ``domain``: :class:`ImagesDomain` and its scores; registers the domain.
"""

from ganforge.domains.images.arrays import ImageSet, image_grid, parse_size, prepare, to_uint8_hwc
from ganforge.domains.images.files import (NumpyOnlyUnpickler, load_idx_images, load_image_array, load_image_folder,
                                           read_idx, read_mnist)
from ganforge.domains.images.stacked import read_stacked_mnist, stack_digits, stacked_scores
from ganforge.domains.images.sources import BUILTIN_IMAGES, DATA_SEED, load_images, split_holdout
from ganforge.domains.images.tasks import IMAGE_TASKS, read_condition_images, reconstruction_scores, shrink, sobel_edges
from ganforge.domains.images.pictures import write_comparison_png
from ganforge.domains.images.domain import ImagesDomain, feature_scores, pixel_statistics

__all__ = ["BUILTIN_IMAGES", "DATA_SEED", "IMAGE_TASKS", "ImageSet", "ImagesDomain", "NumpyOnlyUnpickler",
           "feature_scores", "image_grid", "load_idx_images", "load_image_array", "load_image_folder", "load_images",
           "parse_size", "pixel_statistics", "prepare", "read_condition_images", "read_idx", "read_mnist",
           "read_stacked_mnist", "reconstruction_scores", "shrink", "sobel_edges", "split_holdout", "stack_digits",
           "stacked_scores", "to_uint8_hwc", "write_comparison_png"]
