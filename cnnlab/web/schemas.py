"""The JSON bodies the web API accepts. ``TrainRequest`` is the Train form; it validates into
the ``RunConfig`` that ``cnnlab train`` builds from its options."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.runs.config import RunConfig
from cnnlab.runs.recipes import RECIPES, get_recipe
from cnnlab.runs.zoo import ACTIVATIONS, PRESETS


def _one_of(choices: Iterable[str]) -> Callable[[Any], Any]:
    names = list(choices)

    def check(value: Any) -> Any:
        if value is not None and value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value

    return check


class TrainRequest(BaseModel):
    """The Train panel's choices; one left out (null) takes the recipe's value."""

    dataset: str = "mnist-sample"
    recipe: Annotated[str, AfterValidator(_one_of(RECIPES))] = "default"
    preset: Annotated[str | None, AfterValidator(_one_of(PRESETS))] = None
    activation: Annotated[str, AfterValidator(_one_of(ACTIVATIONS))] = "relu"
    epochs: int | None = Field(None, ge=1, le=50)  # None: the recipe's, as cnnlab train
    learning_rate: float | None = Field(None, gt=0, le=10)
    optimizer: Annotated[str | None, AfterValidator(_one_of(OPTIMIZERS))] = None
    loss: Annotated[str, AfterValidator(_one_of(LOSSES))] = "cross-entropy"
    batch_size: int | None = Field(None, ge=1, le=1024)
    subset: int | None = Field(None, ge=10, le=60000)  # the first N training images
    seed: int = Field(0, ge=0, le=2**31 - 1)

    def to_config(self, data_dir: str | None) -> RunConfig:
        """The run this request describes (validated; ``CnnlabError`` when it cannot run)."""
        config = RunConfig(
            recipe=self.recipe,
            dataset=self.dataset,
            data_dir=data_dir,
            subset=self.subset,
            model=self.preset,
            activation=self.activation,
            optimizer=self.optimizer,
            lr=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.epochs,
            loss=self.loss,
            seed=self.seed,
        )
        config.validate()
        return config


def form_defaults() -> dict[str, Any]:
    """The form's starting values: the request's defaults, the default recipe's for the rest."""
    defaults = TrainRequest().model_dump()
    recipe = get_recipe(defaults["recipe"])
    defaults.update(
        preset=recipe.model,
        optimizer=recipe.optimizer,
        learning_rate=recipe.lr,
        batch_size=recipe.batch_size,
    )
    return defaults


def recipes() -> dict[str, dict[str, Any]]:
    """Every recipe's values, for the form to show and fill in."""
    return {name: asdict(recipe) for name, recipe in RECIPES.items()}


class SelectRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["pixels"],
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "items": {"type": "array", "items": {"type": "number"}},
                            "description": "28×28 grey levels in [0, 1], ink bright on dark "
                            "(MNIST style); any 2-D size from 5×5 to 1024×1024 with "
                            "preprocess=true",
                        },
                        "preprocess": {
                            "type": "boolean",
                            "default": False,
                            "description": "crop, fit and centre the array like a picture",
                        },
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
