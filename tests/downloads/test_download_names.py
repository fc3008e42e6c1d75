"""Repo ids and revisions are checked strictly before anything touches the hub or the disk."""

from __future__ import annotations

import pytest

from mlx_manager.downloads.names import check_repo_id, check_revision
from mlx_manager.errors import InvalidRequest


@pytest.mark.parametrize(
    "repo_id", ["mlx-community/Qwen3-0.6B-4bit", "a/b", "Org_1/model.v2", "x" * 40 + "/" + "y" * 50]
)
def test_good_repo_ids(repo_id: str) -> None:
    assert check_repo_id(repo_id) == repo_id


@pytest.mark.parametrize(
    "repo_id",
    [
        "gpt2",  # no owner: never taken for a path or a bare name
        "a/b/c",
        "../etc",
        "../../x",
        "a/..",
        "a..b/c",
        "a--b/c",
        "/abs/path",
        "a/b.git",
        ".hidden/x",
        "a/-b",
        "a b/c",
        "a/b\x00",
        "",
        "/",
        "x" * 97 + "/y",  # over 96 characters
        "é/x",  # the hub's alphabet is ASCII
    ],
)
def test_bad_repo_ids(repo_id: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_repo_id(repo_id)
    assert caught.value.param == "repo_id" and caught.value.code == "invalid_repo_id"
    assert caught.value.status == 400


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "a" * 40, "release_2"])
def test_good_revisions(revision: str) -> None:
    assert check_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["", "..", "../x", "a/../b", "/main", "main/", "a//b", "-x", "a b", "x.lock", "a.", "r" * 200],
)
def test_bad_revisions(revision: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_revision(revision)
    assert caught.value.param == "revision" and caught.value.code == "invalid_revision"
