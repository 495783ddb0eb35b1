"""Acme's vertical models (an example third-party package)."""
