"""The raygan explanation service on Ray Serve (`serve run serve/config.yaml` or `raygan serve`)."""
