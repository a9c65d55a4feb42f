"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a directory, serve it on
127.0.0.1 (a free port, trust authentication, the Unix socket inside the directory), stop it.

    from planweave.planner.testing.postgres import PostgresCluster

    with PostgresCluster(tmp_path / "pg") as cluster:
        store = open_store(cluster.url)        # postgresql://planweave@127.0.0.1:PORT/planweave

From a shell (CI): `python -m planweave.planner.testing.postgres start DIR` prints the URL,
`... stop DIR` stops it. The binaries come from `pg_config --bindir`, else
/usr/lib/postgresql/*/bin, else the PATH; as root the server runs as the `postgres` user
(PostgreSQL refuses to run as root). Only the standard library is imported here.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "PostgresUnavailableError", "find_bindir"]

SUPERUSER = "planweave"
DATABASE = "planweave"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be started here (binaries missing, initdb or start failed)."""


def find_bindir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian's packages: newest major version first.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise PostgresUnavailableError(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found (looked in `pg_config --bindir`, "
        "/usr/lib/postgresql/*/bin and the PATH); install them (`apt-get install postgresql`), or point "
        "PLANWEAVE_TEST_PG_URL at a running server."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL cluster in `directory` (created; reused by `start` if it holds one).

    Args:
        directory: where the cluster lives (`data/`, the socket, the log).
        durable: keep PostgreSQL's defaults (`fsync`, `synchronous_commit`); False turns both
            off, for fast tests that never survive a power loss anyway.
    """

    def __init__(self, directory: str | Path, *, durable: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.durable = durable
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = 0

    @property
    def url(self) -> str:
        """`postgresql://planweave@127.0.0.1:PORT/planweave` (no password: trust authentication)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailableError("running as root, and `runuser` is missing to start PostgreSQL as `postgres`.")
        return [runuser, "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], what: str) -> None:
        try:
            done = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailableError(f"{what} failed: {exc}") from exc
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailableError(f"{what} failed ({done.returncode}): {done.stderr.strip()}\n{log}".strip())

    def start(self) -> str:
        """Create the cluster if needed, start the server, create the `planweave` database; returns `url`."""
        bindir = find_bindir()
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self.directory.chmod(0o700)
        if not (self.data / "PG_VERSION").exists():
            self._run([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                       "--no-sync", "--no-instructions"], "initdb")
        self.port = _free_port()
        options = [
            "-c listen_addresses=127.0.0.1", f"-c port={self.port}", f"-c unix_socket_directories={self.directory}",
            "-c max_connections=400", "-c shared_buffers=64MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                   "-o", " ".join(options), "start"], "starting PostgreSQL")
        (self.directory / "url").write_text(self.url + "\n")
        self._create_database(bindir)
        return self.url

    def _create_database(self, bindir: Path) -> None:
        psql = bindir / "psql" if (bindir / "psql").exists() else Path(shutil.which("psql") or "psql")
        check = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True, text=True, timeout=60,
        )
        if check.returncode == 0 and check.stdout.strip() == "1":
            return
        done = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-c",
             f"CREATE DATABASE {DATABASE}"],
            capture_output=True, text=True, timeout=60,
        )
        if done.returncode != 0:
            raise PostgresUnavailableError(f"creating the database `{DATABASE}` failed: {done.stderr.strip()}")

    def stop(self) -> None:
        """Stop the server (fast shutdown); the directory stays (remove it yourself)."""
        if not (self.data / "postmaster.pid").exists():
            return
        bindir = find_bindir()
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
                  "stopping PostgreSQL")

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    usage = "usage: python -m planweave.planner.testing.postgres start|stop DIRECTORY [--fast]"
    if len(argv) < 2 or argv[0] not in ("start", "stop"):
        print(usage, file=sys.stderr)
        return 2
    cluster = PostgresCluster(argv[1], durable="--fast" not in argv[2:])
    try:
        if argv[0] == "start":
            started = time.monotonic()
            print(cluster.start())
            print(f"PostgreSQL started in {time.monotonic() - started:.1f}s ({cluster.directory})", file=sys.stderr)
        else:
            cluster.stop()
    except PostgresUnavailableError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
