"""Runs: the application core that every front end calls.

The model zoo, the training recipes, one run configuration, the run folder and the one pipeline
that trains a configuration into a run folder.
"""
