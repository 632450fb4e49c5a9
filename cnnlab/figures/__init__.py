"""Figures: matplotlib drawings of training curves, confusion matrices and filters."""
