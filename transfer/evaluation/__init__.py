"""Evaluation: metrics (NE, AUC, calibration, lift, transfer ratio), the in-run lift table, serving cost against a budget."""
