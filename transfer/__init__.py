"""gem-transfer's engine: recipes, data, knowledge, training, evaluation, tracking and the CLI."""

__version__ = "0.1.0"
