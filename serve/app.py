"""`serve run` entry point from a checkout: the application builder lives in `raygan.service.app`.

`serve/config.yaml` names `raygan.service.app:build_app` directly, so an installed wheel needs no
checkout; this alias keeps `import_path: serve.app:build_app` working for configs written earlier.
"""

from raygan.service.app import build_app

__all__ = ["build_app"]
