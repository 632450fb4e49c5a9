"""Teach answers from its first examples: a prototype model on the shipped extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_web_teach import drawing

from cnnlab.runs.inputs import read_picture
from cnnlab.web.teach import Project


def test_the_quick_model_answers_from_one_example_a_class_and_follows_new_ones(
    tmp_path: Path,
) -> None:
    project = Project(tmp_path)
    project.create(["circle", "cross", "line"])
    rng = np.random.default_rng(0)
    project.add_example("circle", drawing("circle", rng))
    project.add_example("cross", drawing("cross", rng))
    assert project.quick_model() is None  # "line" has no example yet
    project.add_example("line", drawing("line", rng))
    model = project.quick_model()
    assert model is not None and model.meta["class_names"] == ["circle", "cross", "line"]
    assert model.meta["head"] == "prototype" and project.quick_model() is model  # kept
    # Each example is nearest its own class.
    for k, name in enumerate(["circle", "cross", "line"]):
        picture = (project.data_dir / name / "0000.png").read_bytes()
        assert int(np.argmax(model.predict_proba(read_picture(model, picture).x[None]))) == k
    project.add_example("line", drawing("line", rng))
    again = project.quick_model()
    assert again is not model and again.meta["n_examples"] == 4
    project.create(["a", "b"])  # a new project: no answer until its own examples
    assert project.quick_model() is None
