"""Knob search for a recipe's transfer stage (`gem-transfer tune`): an Optuna study on the validation
window, one MLflow child run per trial, resumable from its folder, the best recipe written as YAML."""
