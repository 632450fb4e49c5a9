"""Figures: ``base`` (the figure and the atomic PNG save every cnnlab drawing uses) and ``plots``
(a training run's curves, confusion matrix, first-layer filters and misclassified digits)."""
