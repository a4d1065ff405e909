from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from marketing.env import env_bool, env_database_url, env_int, env_path_prefix, env_redis_url


def test_database_url_with_socket_directory_and_port(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://bob:s%40cret@db.internal:6543/herald?host=/run/pg&sslmode=require")
    parsed = env_database_url("DATABASE_URL")
    assert (parsed.user, parsed.password, parsed.host, parsed.port, parsed.name) == (
        "bob",
        "s@cret",
        "/run/pg",
        "6543",
        "herald",
    )
    assert parsed.options == {"sslmode": "require"}


@pytest.mark.parametrize(
    "value, words",
    [
        ("mysql://root@localhost/herald", "must be a postgres:// URL"),
        ("postgres://localhost", "names no database"),
        ("postgres://localhost:notaport/herald", "invalid port"),
    ],
)
def test_a_wrong_database_url_names_the_variable(monkeypatch, value, words):
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as error:
        env_database_url("DATABASE_URL")
    assert words in str(error.value)


def test_unset_required_variable_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL is not set"):
        env_database_url("DATABASE_URL")


def test_booleans_integers_and_paths_are_strict(monkeypatch):
    monkeypatch.setenv("DEBUG", "yes")
    assert env_bool("DEBUG") is True
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG")
    monkeypatch.setenv("HERALD_WEBHOOK_MAX_BYTES", "lots")
    with pytest.raises(ImproperlyConfigured, match="HERALD_WEBHOOK_MAX_BYTES"):
        env_int("HERALD_WEBHOOK_MAX_BYTES", 10)
    monkeypatch.setenv("HERALD_ADMIN_PATH", "/staff/console")
    assert env_path_prefix("HERALD_ADMIN_PATH", "admin/") == "staff/console/"
    monkeypatch.setenv("HERALD_ADMIN_PATH", "/")
    with pytest.raises(ImproperlyConfigured, match="HERALD_ADMIN_PATH"):
        env_path_prefix("HERALD_ADMIN_PATH", "admin/")
    monkeypatch.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        env_redis_url("REDIS_URL")
