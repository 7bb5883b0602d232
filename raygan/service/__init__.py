"""The HTTP explanation service's library side: its config, HTTP schemas, URI policy, pictures, shard jobs.

The Ray Serve deployments and the FastAPI routes live in `serve/app.py`; everything here is plain
Python that the app (and its tests) import. Nothing here imports Ray.
"""

from raygan.service.config import ServiceConfig

__all__ = ["ServiceConfig"]
