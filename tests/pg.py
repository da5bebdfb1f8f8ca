"""A throwaway PostgreSQL server for tests.

``start_postgres()`` runs ``initdb`` into a fresh folder, starts ``postgres``
on 127.0.0.1 at a free port (and a unix socket in that folder) with trust
authentication, creates a database, and returns a handle whose ``stop()``
shuts the server down (``pg_ctl stop -m immediate``) and removes the folder.

The binaries come from ``$PG_BIN``, Debian's ``/usr/lib/postgresql/*/bin``
(``apt-get install -y postgresql``) or ``PATH``. PostgreSQL refuses to run as
root, so under root the server runs as the ``postgres`` user, in a folder
under the system temp dir that it owns (pytest's ``tmp_path`` is private to
root). Anything that prevents a start raises :class:`PgUnavailable` with a
reason naming what failed, for the caller to skip on.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgServer", "PgUnavailable", "find_bin", "start_postgres"]

USER = "ferroptim"  # the database superuser initdb creates
OS_USER = "postgres"  # who runs the server when we are root


class PgUnavailable(RuntimeError):
    """The server cannot be started here; the message says why."""


def find_bin() -> Path:
    """The folder holding initdb, pg_ctl and postgres (newest version first)."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if all((Path(folder) / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in $PG_BIN, "
        "/usr/lib/postgresql/*/bin or PATH (install them: apt-get install -y postgresql)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    bin: Path
    base: Path
    port: int
    user: str | None  # OS user the server runs as (None: this process's)
    remove_base: bool

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str = "optuna", driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.base,  # the server user may not be able to enter ours
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            **kwargs,
        )

    def _check(self, what: str, proc: subprocess.CompletedProcess) -> None:
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            log = self.log.read_text().strip().splitlines()[-3:] if self.log.exists() else []
            raise PgUnavailable(
                f"{what} failed (exit {proc.returncode}): {' | '.join(tail + log) or 'no output'}"
            )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "stop", "-m", "immediate", "-w")
        finally:
            if self.remove_base:
                shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(base: Path, database: str = "optuna") -> PgServer:
    """Starts a server with its data under ``base`` (or, as root, a folder of its own)."""
    pgbin = find_bin()
    user = None
    remove_base = False
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError:
            raise PgUnavailable(
                f"running as root and there is no {OS_USER!r} user to run the server as"
            ) from None
        user = OS_USER
        # Short (unix socket paths are limited) and reachable by that user.
        base = Path(tempfile.mkdtemp(prefix="ferroptim-pg-"))
        os.chown(base, entry.pw_uid, entry.pw_gid)
        remove_base = True
    base.mkdir(parents=True, exist_ok=True)
    server = PgServer(pgbin, base, 0, user, remove_base)
    try:
        server._check(
            "initdb",
            server._run(
                "initdb",
                "-D",
                str(server.data),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                timeout=120,
            ),
        )
        for attempt in range(3):  # the free port may be taken in between
            server.port = _free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={server.port}",
                    f"-c unix_socket_directories={base}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=50",
                ]
            )
            proc = server._run(
                "pg_ctl",
                "-D",
                str(server.data),
                "-l",
                str(server.log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
                timeout=90,
            )
            if proc.returncode == 0:
                break
            if attempt == 2 or "already in use" not in server.log.read_text():
                server._check("pg_ctl start", proc)
        server._check(
            "createdb",
            server._run(
                "createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, database
            ),
        )
    except BaseException as err:
        server.stop()
        if isinstance(err, (OSError, subprocess.SubprocessError)):
            raise PgUnavailable(f"starting PostgreSQL failed: {err}") from err
        raise
    return server
