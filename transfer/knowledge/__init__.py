"""Knowledge: the parquet tables a producer emits (writer, shards, provenance, join on example_id) and generating them."""
