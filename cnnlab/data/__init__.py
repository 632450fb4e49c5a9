"""Data sets for cnnlab: the strict IDX reader and writer, loaders, downloads and the cache.

``load(name, split)`` returns ``(inputs, labels)`` for ``mnist``, ``fashion-mnist``,
``mnist-sample`` (bundled) and ``sonar`` (bundled). This package uses only the standard library
and NumPy; it does not import the network engine.
"""

from cnnlab.data.datasets import (
    DATASETS,
    IMAGE_DATASETS,
    DatasetInfo,
    available,
    class_names,
    load,
    names,
    read_sonar_csv,
)
from cnnlab.data.download import cache_dir, fetch
from cnnlab.data.idx import read_idx, write_idx

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "DatasetInfo",
    "available",
    "cache_dir",
    "class_names",
    "fetch",
    "load",
    "names",
    "read_idx",
    "read_sonar_csv",
    "write_idx",
]
