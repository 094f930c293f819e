"""Reusable widgets (item grid, confirm dialog, progress panel, tag input, ...)."""
