"""LesionLab."""
