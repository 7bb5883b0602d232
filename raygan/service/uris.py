"""Which storage URIs a client may make the service read and write.

A shard job names an input and an output URI. Both must lie under one of the operator's
allowed prefixes, checked after normalisation so that `..`, `.` and doubled slashes cannot
escape: S3 keys are normalised as POSIX paths; local paths (and file:// URIs) are resolved with
`os.path.realpath`, which also follows symlinks, and must resolve under an allowed local prefix
(itself resolved). Prefixes match whole path segments (`s3://b/data` does not allow
`s3://b/data-private`). Relative local paths are refused: they would depend on the replica's
working directory.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

_S3 = "s3://"
_FILE = "file://"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
MAX_URI_LENGTH = 2048


class InvalidUri(ValueError):
    """The text is not a URI the service understands (answered with 422)."""


class UriNotAllowed(PermissionError):
    """A well-formed URI outside every allowed prefix (answered with 403)."""


def normalise(uri: str) -> str:
    """The canonical form of a local path, file:// or s3:// URI; raises InvalidUri when malformed."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidUri("empty URI")
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidUri(f"URI longer than {MAX_URI_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in uri):
        raise InvalidUri("URI contains control characters")
    if uri.startswith(_S3):
        bucket, _, key = uri[len(_S3):].partition("/")
        if not _BUCKET.match(bucket):
            raise InvalidUri(f"invalid S3 bucket name {bucket!r} in {uri!r}")
        # Leading "/" anchors the key so ".." can never climb above the bucket.
        key = posixpath.normpath("/" + key).lstrip("/") if key.strip("/") else ""
        return f"{_S3}{bucket}/{key}" if key else f"{_S3}{bucket}"
    if uri.startswith(_FILE):
        uri = uri[len(_FILE):]
    elif "://" in uri:
        raise InvalidUri(f"unsupported URI scheme in {uri!r}: use s3://, file:// or an absolute local path")
    if not os.path.isabs(uri):
        raise InvalidUri(f"local paths must be absolute, got {uri!r}")
    return os.path.realpath(uri)


def _under(uri: str, prefix: str) -> bool:
    return uri == prefix or uri.startswith(prefix.rstrip("/") + "/")


@dataclass(frozen=True)
class UriPolicy:
    """The allowed prefixes (normalised); an empty policy allows nothing."""

    prefixes: tuple[str, ...]  # normalised s3:// prefixes and resolved local directories

    @classmethod
    def of(cls, prefixes: tuple[str, ...] | list[str]) -> UriPolicy:
        """A policy from operator-given prefixes (normalised the same way as client URIs)."""
        return cls(tuple(normalise(p) for p in prefixes))

    def check(self, uri: str) -> str:
        """The normalised `uri` if it lies under an allowed prefix; InvalidUri / UriNotAllowed otherwise."""
        norm = normalise(uri)
        if not self.prefixes:
            raise UriNotAllowed("shard jobs are disabled: the service has no allowed prefixes configured")
        if not any(_under(norm, p) for p in self.prefixes):
            raise UriNotAllowed(f"{uri!r} (normalised {norm!r}) is outside the allowed prefixes")
        return norm

    def check_job(self, input_uri: str, output_uri: str) -> tuple[str, str]:
        """Both URIs of a shard job, checked together so one answer names every problem.

        The output may not lie inside the input (a rerun would read the results as input shards).
        """
        checked: dict[str, str] = {}
        invalid: list[str] = []
        denied: list[str] = []
        for name, uri in (("input_uri", input_uri), ("output_uri", output_uri)):
            try:
                checked[name] = self.check(uri)
            except InvalidUri as e:
                invalid.append(f"{name}: {e}")
            except UriNotAllowed as e:
                denied.append(f"{name}: {e}")
        if invalid:
            raise InvalidUri("; ".join(invalid + denied))
        if denied:
            raise UriNotAllowed("; ".join(denied))
        if _under(checked["output_uri"], checked["input_uri"]):
            raise InvalidUri("output_uri must not lie inside input_uri (results would be read back as input shards)")
        return checked["input_uri"], checked["output_uri"]


__all__ = ["InvalidUri", "MAX_URI_LENGTH", "UriNotAllowed", "UriPolicy", "normalise"]
