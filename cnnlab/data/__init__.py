"""Data sets for cnnlab: the strict IDX reader and writer, loaders, downloads and the cache.

``load(name, split)`` returns ``(inputs, labels)`` for ``mnist``, ``fashion-mnist``,
``mnist-sample`` (bundled), ``sonar`` (bundled), ``cifar10`` and ``shapes`` (generated);
``cnnlab.data.pictures.load_image_set(name_or_folder)`` gives any picture set, a folder of
one's own pictures included, as an ``ImageSet``. The loaders use the standard library and NumPy
only; reading picture files (``folders``, ``pictures``, ``preprocess``) needs Pillow. Of the
network engine they use only errors, file writes and the progress bar.
"""

from cnnlab.data.datasets import (
    DATASETS,
    IMAGE_DATASETS,
    PICTURE_DATASETS,
    DatasetInfo,
    UnknownDatasetError,
    available,
    check_picture_source,
    class_names,
    load,
    names,
    read_sonar_csv,
)
from cnnlab.data.download import cache_dir, fetch
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.imageset import ImageSet, channel_stats, normalise, stratified_split

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "PICTURE_DATASETS",
    "DatasetInfo",
    "ImageSet",
    "UnknownDatasetError",
    "available",
    "cache_dir",
    "channel_stats",
    "check_picture_source",
    "class_names",
    "fetch",
    "load",
    "names",
    "normalise",
    "read_idx",
    "read_sonar_csv",
    "stratified_split",
    "write_idx",
]
