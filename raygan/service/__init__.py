"""The HTTP explanation service: config, HTTP schemas, URI policy, pictures, shard jobs, and the app.

`raygan.service.app` holds the Ray Serve deployments and the application builder, and
`raygan.service.api` the FastAPI routes; only those two import Ray or FastAPI, so everything else
here is plain Python that the app and its tests import. `serve/app.py` at the repository root is
a thin alias of `raygan.service.app` for `serve run serve/config.yaml` from a checkout.
"""

from raygan.service.config import ServiceConfig

__all__ = ["ServiceConfig"]
