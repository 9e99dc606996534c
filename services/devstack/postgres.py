"""A private PostgreSQL 15 cluster (initdb / pg_ctl) in a gitignored folder.

PostgreSQL refuses to run as root; when the stack runs as root (CI), the server runs as the
``postgres`` system user through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services.devstack.process import MissingTool, StackError, port_open, tail

__all__ = ["PG_BIN", "PostgresCluster"]

PG_BIN = Path(os.environ.get("TRADEPULSE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_FIX = (
    "Install the PostgreSQL 15 server: apt-get install -y postgresql-15 "
    "(or set TRADEPULSE_PG_BIN to its bin folder, or DATABASE_URL to an existing server)"
)


@dataclass(frozen=True, slots=True)
class PgTls:
    """A cluster that takes TLS connections only, with a password (scram-sha-256)."""

    cert_pem: Path
    key_pem: Path
    password: str


@dataclass(slots=True)
class PostgresCluster:
    """One cluster with one database and one local user, both named ``tradepulse``: trusted, or
    (``tls``) over TLS with a password only."""

    home: Path
    port: int = 15432
    user: str = "tradepulse"
    database: str = "tradepulse"
    tls: PgTls | None = None

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def logfile(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"
        return f"postgresql://{self.user}:{self.tls.password}@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        path = PG_BIN / name
        if not path.exists():
            msg = f"{path} not found. {PG_FIX}"
            raise MissingTool(msg)
        return str(path)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                msg = "running as root needs runuser (util-linux) to start PostgreSQL as postgres"
                raise MissingTool(msg)
            argv = [runuser, "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            msg = f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            raise StackError(msg)
        return done

    def _own(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            for path in self.home.rglob("*"):
                shutil.chown(path, "postgres", "postgres")

    def version_line(self) -> str:
        done = subprocess.run(
            [self._bin("postgres"), "--version"], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def running(self) -> bool:
        if not (self.datadir / "postmaster.pid").exists():
            return False
        return (
            self._run([self._bin("pg_ctl"), "-D", str(self.datadir), "status"], check=False).returncode == 0
        )

    def start(self) -> None:
        """initdb on first use, start, wait until it accepts connections, create the database."""
        initdb, pg_ctl = self._bin("initdb"), self._bin("pg_ctl")
        if self.running():
            return
        self._own()
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                [
                    initdb,
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]
            )
        if port_open("127.0.0.1", self.port):
            msg = f"port {self.port} is already in use; stop what holds it or set TRADEPULSE_STACK_PG_PORT"
            raise StackError(msg)
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        if self.tls is not None:
            opts += " " + self._tls_setup(self.tls)
        done = self._run(
            [pg_ctl, "-D", str(self.datadir), "-l", str(self.logfile), "-o", opts, "-w", "-t", "60", "start"],
            check=False,
        )
        if done.returncode != 0:
            msg = f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\n{tail(self.logfile)}"
            raise StackError(msg)
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname='{self.database}'", "-tA")
        if exists.stdout.strip() != "1":
            self._psql(f'CREATE DATABASE "{self.database}"')
        if self.tls is not None:
            self._psql(f"ALTER USER \"{self.user}\" PASSWORD '{self.tls.password}'")

    def _tls_setup(self, tls: PgTls) -> str:
        """Server certificate into the data folder; TCP connections only with TLS and a password
        (the local socket stays trusted, for set-up). Returns the server options."""
        for source, name in ((tls.cert_pem, "server.crt"), (tls.key_pem, "server.key")):
            target = self.datadir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        self._own()
        return "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"

    def _psql(self, sql: str, *flags: str) -> subprocess.CompletedProcess[str]:
        psql = str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else shutil.which("psql") or "psql"
        conn = ["-h", str(self.home), "-p", str(self.port), "-U", self.user, "-d", "postgres"]  # socket
        return self._run([psql, *conn, *flags, "-c", sql])

    def stop(self) -> None:
        if self.datadir.exists() and self.running():
            self._run([self._bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"], check=False)
