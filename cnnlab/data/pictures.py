"""Any picture set as an :class:`~cnnlab.data.imageset.ImageSet`: the one entry for training.

A named set (``PICTURE_DATASETS``: the digit sets, ``shapes``, ``cifar10``) or a folder of the
user's own pictures (:mod:`cnnlab.data.folders`, which needs Pillow). Kept apart from
:mod:`cnnlab.data.datasets`, whose loaders need only the standard library and NumPy.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnlab.data import cifar, shapes
from cnnlab.data.datasets import IMAGE_DATASETS, check_picture_source, class_names, load
from cnnlab.data.folders import load_folder
from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError


def load_image_set(
    source: str | os.PathLike,
    image_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    **download: Any,
) -> ImageSet:
    """A named picture set (``PICTURE_DATASETS``) or an image folder, as an :class:`ImageSet`.

    ``image_size`` resizes the pictures of a folder (default 32) or renders ``shapes`` at that
    size; the other named sets have a fixed size. ``seed`` picks a folder's train/test split.
    ``download`` passes ``mirrors`` and ``timeout`` on to a download.
    """
    name = str(source)
    if name in IMAGE_DATASETS:
        if image_size not in (None, 28):
            raise CnnlabError(f"{name} pictures are 28x28; leave out --image-size")
        (x, y), (xt, yt) = (
            load(name, split, data_dir, progress, **download) for split in ("train", "test")
        )
        return ImageSet(
            name, class_names(name), x[:, None], y.astype(np.int64), xt[:, None],
            yt.astype(np.int64), kind="digits",
        )  # fmt: skip
    if name == "shapes":
        return shapes.load(size=image_size or 32)
    if name == "cifar10":
        if image_size not in (None, 32):
            raise CnnlabError("cifar10 pictures are 32x32; leave out --image-size")
        return cifar.load(data_dir, progress=progress, **download)
    check_picture_source(name)
    return load_folder(name, image_size or 32, seed=seed, progress=progress)
