"""The engine: layers, losses, optimizers, ``Sequential``, the model file and ``fit``.

It needs only NumPy and imports nothing else of cnnlab (an import-linter contract in
``pyproject.toml`` keeps it so): everything above it — data, runs, explanations, export and the
front ends — is built on what these modules offer.
"""
