"""The exception types a user of cnnlab sees.

Every problem caused by input (a bad file, a wrong shape, an impossible setting) is raised as a
``CnnlabError`` with a one-line message naming the problem and the fix. The command line prints
that line and exits non-zero; it never shows a traceback for these. Code that must react to one
kind of problem catches its subclass, never a piece of the message.
"""


class CnnlabError(ValueError):
    """A problem with what the user gave cnnlab; ``str(err)`` is a complete one-line message.

    ``http_status`` is the status the web lab answers it with (a subclass may say another).
    """

    http_status = 422


class InvalidArgumentError(CnnlabError):
    """An argument out of its range or choices: ``"{who}: {name} must be {requirement}, got
    {received}"``. A front end may say the same in its own words, naming the option or field
    that set ``name`` (the command line: ``argument --image-size: must be …``)."""

    def __init__(self, who: str, name: str, requirement: str, received: object) -> None:
        self.who, self.name, self.requirement = who, name, requirement
        self.received = repr(received)
        super().__init__(f"{who}: {name} must be {requirement}, got {self.received}")


class NonFiniteError(CnnlabError):
    """An array that must be finite holds NaN or inf (an input, or a network's output)."""


class TrainingDivergedError(CnnlabError):
    """Training stopped learning: the loss exploded, or accuracy stayed at chance; the message
    names the step and a lower learning rate."""


class NonFiniteLossError(TrainingDivergedError):
    """Training diverged: the loss became NaN or infinite at the step the message names."""


class PickleRefusedError(CnnlabError):
    """A file holds pickled Python objects, which cnnlab never loads (they can run code)."""


# PyTorch's CPU build: plain PyPI's torch wheel for Linux brings CUDA's libraries (gigabytes).
TORCH_CPU_INSTALL = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def install_hint(extras: str) -> str:
    """The command that installs the optional packages of ``extras`` (``"lab"``, ``"onnx"``,
    ``"torch"``, ``"lab,test"``, …), worded as the README words it: ``pip install -e
    ".[extras]"`` in the cnnlab folder, PyTorch first from its CPU index when they need it."""
    wanted = extras.split(",")
    if wanted == ["torch"]:
        return TORCH_CPU_INSTALL
    command = f'pip install -e ".[{extras}]" in the cnnlab folder'
    if {"torch", "test"} & set(wanted):
        return f"{TORCH_CPU_INSTALL}, then {command}"
    return command


class MissingPackageError(CnnlabError):
    """An optional package is not installed; the message names the command that installs it."""

    def __init__(self, need: str, extras: str) -> None:
        """``need`` says what needs what (``"ONNX export needs onnx"``); ``extras`` is the
        extra that brings it."""
        super().__init__(f"{need}, which is not installed; install it with: {install_hint(extras)}")
