"""Restarting the local services with infra/services.sh, in a state folder of
its own: the running app keeps working because nothing it holds changes. The
state folder lies in a folder only its owner may enter, as a checkout under
/root or a private home folder does."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.infra.support import SERVICES, Listener, read_env, run, script_env

pytestmark = pytest.mark.slow

MANAGED = ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL")


def services(state: Path, command: str, exported: dict[str, str] | None = None) -> str:
    """Run `infra/services.sh COMMAND`; its messages (stderr) when it succeeds."""
    result = run([SERVICES, command], script_env(state, exported))
    assert result.returncode == 0, result.stderr
    return result.stderr


def assert_answering(env: dict[str, str]) -> None:
    connection = psycopg2.connect(env["DATABASE_URL"], connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()
    assert redis.Redis.from_url(env["REDIS_URL"], socket_timeout=5).ping()


def port_of(url: str) -> int:
    match = re.search(r":(\d+)(/|$)", url.rsplit("@", 1)[-1])
    assert match, url
    return int(match.group(1))


def private_folder() -> Path:
    """A new folder only its owner may enter (mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="lubdub-services-test-"))
    assert folder.stat().st_mode & 0o077 == 0
    return folder


def postgres_home(state: Path) -> Path:
    """PostgreSQL's folder (data/, server.log) for a state folder."""
    link = state / "pg" / "home"
    return Path(os.readlink(link)) if link.is_symlink() else state / "pg"


def as_server_user(*command: str) -> int:
    """The exit status of COMMAND run as the user PostgreSQL runs as (root: postgres)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, timeout=30).returncode


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    private = private_folder()
    folder = private / ".services"
    try:
        services(folder, "up")
        yield folder
    finally:
        run([SERVICES, "clean"], script_env(folder))
        shutil.rmtree(private, ignore_errors=True)


def test_postgres_keeps_its_data_where_its_user_can_reach_it(state: Path) -> None:
    data = postgres_home(state) / "data"

    assert (data / "PG_VERSION").is_file()
    # The server's user reads its data although it cannot enter the folder the
    # state folder is in (as root: postgres; otherwise that user owns both).
    assert as_server_user("test", "-r", str(data / "PG_VERSION")) == 0
    if os.geteuid() == 0:
        assert as_server_user("test", "-x", str(state.parent)) != 0
        assert data.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert not data.is_relative_to(state)
        assert (data.parent / "state-folder").read_text().strip() == str(state)
    else:
        assert data == state / "pg" / "data"
    assert_answering(read_env(state / "env"))


def test_down_and_up_keep_every_port_and_password(state: Path) -> None:
    first = read_env(state / "env")

    for _ in range(2):
        services(state, "down")
        assert not (state / "env").exists()
        messages = services(state, "up")

        # The app's environment file is written again, with the same values:
        # processes started before the restart still reach the services.
        assert read_env(state / "env") == first
        assert "is taken" not in messages
    assert_answering(first)


def test_a_shell_that_sourced_the_env_file_still_gets_the_services_started(state: Path) -> None:
    # As the README says: `set -a; . .services/env; set +a`, then manage the services.
    exported = read_env(state / "env")
    services(state, "down", exported)

    messages = services(state, "up", exported)

    for name in ("PostgreSQL", "Redis", "S3"):
        assert f"{name}: using" not in messages
        assert f"{name}: already running" not in messages
    assert run([SERVICES, "running"], script_env(state)).returncode == 0
    assert read_env(state / "env") == exported
    assert_answering(exported)


def test_services_given_by_the_environment_are_still_left_alone(state: Path) -> None:
    elsewhere = {"REDIS_URL": "redis://:someone-else@127.0.0.1:9/0"}

    messages = services(state, "up", elsewhere)

    assert "Redis: using REDIS_URL from the environment" in messages
    assert read_env(state / "env")["REDIS_URL"] == elsewhere["REDIS_URL"]
    # Back to its own Redis (still running) for the tests that follow.
    messages = services(state, "up")
    assert "Redis: already running" in messages
    assert read_env(state / "env")["REDIS_URL"] != elsewhere["REDIS_URL"]


def test_a_port_taken_while_a_service_was_down_is_replaced_and_the_change_printed(state: Path) -> None:
    before = read_env(state / "env")
    old_port = port_of(before["REDIS_URL"])
    services(state, "down")
    squatter = Listener(old_port)
    try:
        messages = services(state, "up")
    finally:
        squatter.stop()

    after = read_env(state / "env")
    new_port = port_of(after["REDIS_URL"])
    assert new_port != old_port
    assert f"Redis: port {old_port} is taken by pid {squatter.pid}" in messages
    assert f"using {new_port}" in messages
    # Only the port moved: the password and the other services stay.
    assert after["REDIS_URL"] == before["REDIS_URL"].replace(f":{old_port}/", f":{new_port}/")
    assert {key: value for key, value in after.items() if key != "REDIS_URL"} == {
        key: value for key, value in before.items() if key != "REDIS_URL"
    }
    assert_answering(after)

    # The new port is the one kept from now on.
    services(state, "down")
    services(state, "up")
    assert read_env(state / "env") == after


def test_the_state_it_keeps_is_readable_by_its_owner_only(state: Path) -> None:
    for name in ("env", "own-urls", "s3/secret", "redis/redis.conf"):
        assert (state / name).stat().st_mode & 0o077 == 0, name
    assert os.access(state / "own-urls", os.R_OK)


def test_clean_deletes_the_state_and_postgres_folder_elsewhere(state: Path) -> None:
    # Its own PostgreSQL, with Redis and S3 given by the module's state folder
    # (neither started nor stopped here).
    shared = read_env(state / "env")
    outside = {key: value for key, value in shared.items() if key.startswith(("REDIS_", "S3_", "AWS_"))}
    private = private_folder()
    folder = private / ".services"
    try:
        messages = services(folder, "up", outside)
        assert "Redis: using REDIS_URL from the environment" in messages
        home = postgres_home(folder)
        assert (home / "data" / "PG_VERSION").is_file()
        assert_answering(read_env(folder / "env"))

        services(folder, "clean", outside)

        assert not folder.exists()
        assert not home.exists()
    finally:
        run([SERVICES, "clean"], script_env(folder, outside))
        shutil.rmtree(private, ignore_errors=True)
    # The other state folder's services are untouched.
    assert_answering(shared)
