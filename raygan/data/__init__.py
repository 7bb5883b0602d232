"""Data: the input-shard schema, the image codec, splits and ingest of user images."""
