"""Configs: the recipe schema (YAML → typed dataclasses with path-naming errors, k=v overrides), every recipe check, and dataset configs (with the built-in datasets)."""
