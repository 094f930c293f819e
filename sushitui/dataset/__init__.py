"""Datasets: registration, scanning, name grouping, caption files, embedded metadata."""
