"""``make bench``: run the benchmarks in a scratch database on the same server.

Creates ``herald_bench_<pid>`` beside the database ``DATABASE_URL`` names, migrates it,
points Django at it before ``django.setup()``, runs each benchmark and drops the
database at the end, whatever happened. Options are passed to the benchmark
(``python benchmarks/run.py --orders 5000`` for a quick run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _server_connection() -> Any:
    """An autocommit connection to the database DATABASE_URL names (CREATE DATABASE
    cannot run in a transaction)."""
    import psycopg

    from marketing.env import env_database_url

    parsed = env_database_url("DATABASE_URL")
    kwargs = {
        "dbname": parsed.name,
        "user": parsed.user or None,
        "password": parsed.password or None,
        "host": parsed.host or None,
        "port": parsed.port or None,
        **parsed.options,
    }
    return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}, autocommit=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print("Set DATABASE_URL (and REDIS_URL) to a PostgreSQL server, or run `make bench`.", file=sys.stderr)
        return 2
    os.environ.setdefault("SECRET_KEY", "herald-benchmark")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing.settings")
    name = f"herald_bench_{os.getpid()}"
    from psycopg import sql

    server = _server_connection()
    server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"scratch database {name} created", flush=True)
    try:
        os.environ["DATABASE_URL"] = _with_database(url, name)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)

        from benchmarks import recommendations

        print("\n== recommendations ==", flush=True)
        return recommendations.run(recommendations.parse(argv))
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        server.close()
        print(f"\nscratch database {name} dropped", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
