"""Shared fixtures. Benchmark data is found through the pipeline's own setting (`data_mirror` in
config/config.yaml, overridden by $HPL_DATA_MIRROR), never a path baked into a test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpl.mirror import PROJECT_ROOT, benchmark_mirror


def _configured_mirror() -> str | None:
    config = PROJECT_ROOT / "config" / "config.yaml"
    if not config.exists():
        return None
    return (yaml.safe_load(config.read_text()) or {}).get("data_mirror")


def mirror_for(benchmark: str) -> Path:
    folder = benchmark_mirror(_configured_mirror(), benchmark)
    if folder is None:
        pytest.fail(
            f"no data mirror for {benchmark}: set data_mirror in config/config.yaml or $HPL_DATA_MIRROR"
        )
    return folder


@pytest.fixture(scope="session")
def alfworld_mirror() -> Path:
    return mirror_for("alfworld")


@pytest.fixture(scope="session")
def webshop_mirror() -> Path:
    return mirror_for("webshop")


@pytest.fixture(scope="session")
def intercode_mirror() -> Path:
    return mirror_for("intercode_sql")


@pytest.fixture(scope="session")
def alfworld_data(alfworld_mirror, tmp_path_factory) -> Path:
    """The validation games extracted once per test session (shared by every ALFWorld test)."""
    from hpl.alfworld.data import prepare_alfworld_data

    return prepare_alfworld_data(
        tmp_path_factory.mktemp("alfworld_data"), alfworld_mirror, splits=["seen", "unseen"]
    )


@pytest.fixture(scope="session")
def sql_server(tmp_path_factory, intercode_mirror):
    """One private MariaDB server with the Spider databases for the test session (InterCode-SQL tests)."""
    from hpl.intercode.server import PrivateServer, ServerError, find_program

    try:
        find_program("mariadbd")
    except ServerError:
        pytest.skip("mariadb-server is not installed")
    with PrivateServer(
        tmp_path_factory.mktemp("sqlserver"), intercode_mirror / "ic_spider_dbs.sql"
    ) as server:
        yield server
    assert not server.running
