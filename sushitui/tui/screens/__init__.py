"""One screen or dialog per module (datasets, browser, item detail, ...)."""
