"""The shard-job URI policy: normalisation, prefixes by whole segments, no `..` or symlink escapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raygan.service.uris import InvalidUri, UriNotAllowed, UriPolicy, normalise


def test_normalise_s3_collapses_dots_and_slashes() -> None:
    assert normalise("s3://bucket/a//b/./c/") == "s3://bucket/a/b/c"
    assert normalise("s3://bucket/a/../../../etc") == "s3://bucket/etc"  # never above the bucket
    assert normalise("s3://bucket") == "s3://bucket"


@pytest.mark.parametrize("uri", ["", "   ", "relative/path", "http://host/x", "s3://ab/x", "s3://Bad_Bucket/x",
                                 "/tmp/a\x00b", "s3://bucket/" + "x" * 3000])
def test_malformed_uris_are_invalid(uri: str) -> None:
    with pytest.raises(InvalidUri):
        normalise(uri)


def test_s3_prefix_matches_whole_segments() -> None:
    policy = UriPolicy.of(["s3://bucket/data"])
    assert policy.check("s3://bucket/data/shards") == "s3://bucket/data/shards"
    assert policy.check("s3://bucket/data") == "s3://bucket/data"
    for uri in ("s3://bucket/data-private/x", "s3://bucket/other", "s3://bucket/data/../secret", "s3://other/data"):
        with pytest.raises(UriNotAllowed):
            policy.check(uri)


def test_local_paths_resolve_before_the_check(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "in").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, allowed / "link")
    policy = UriPolicy.of([str(allowed)])
    assert policy.check(str(allowed / "in")) == str((allowed / "in").resolve())
    assert policy.check(f"file://{allowed}/new/out") == str(allowed.resolve() / "new" / "out")
    for uri in (str(allowed / ".." / "outside"), str(allowed / "link" / "x"), "/etc/passwd", f"{allowed}-evil"):
        with pytest.raises(UriNotAllowed):
            policy.check(uri)


def test_empty_policy_refuses_everything(tmp_path: Path) -> None:
    with pytest.raises(UriNotAllowed, match="no allowed prefixes"):
        UriPolicy.of([]).check(str(tmp_path))


def test_check_job_reports_both_uris_and_refuses_output_inside_input(tmp_path: Path) -> None:
    policy = UriPolicy.of([str(tmp_path)])
    with pytest.raises(UriNotAllowed, match="input_uri.*output_uri"):
        policy.check_job("/etc/x", "s3://bucket/y")
    with pytest.raises(InvalidUri, match="output_uri: .*absolute"):
        policy.check_job(str(tmp_path / "in"), "rel/out")
    with pytest.raises(InvalidUri, match="inside input_uri"):
        policy.check_job(str(tmp_path / "in"), str(tmp_path / "in" / "out"))
    assert policy.check_job(str(tmp_path / "in"), str(tmp_path / "out")) == (
        str(tmp_path.resolve() / "in"), str(tmp_path.resolve() / "out"))
