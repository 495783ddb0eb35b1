"""Data: any parquet/CSV → the validated canonical impression log, the synthetic world, encoding to tensors (cached), time windows, whole-batch loaders."""
