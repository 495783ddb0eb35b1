"""Tracking: MLflow runs (rank 0), the lift table from MLflow, model registration with lineage."""
