"""Built-in dataset configs (YAML files in this folder)."""
