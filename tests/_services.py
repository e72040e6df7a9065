"""Reusable helpers for tests that need external services: free ports, HTTP servers, PostgreSQL.

Import them as ``_services`` from test modules or conftests: pytest puts ``tests/`` on
``sys.path`` (rootdir conftest, default import mode), and ``tests/dashboard/conftest.py`` shows
how to make that explicit. The ``postgres_url`` fixture becomes available to a folder's tests
when its conftest imports it::

    from _services import postgres_server

    def test_something():
        with postgres_server() as url:  # "postgresql+psycopg2://kmtpe@127.0.0.1:<port>/kmtpe"
            storage = optuna.storages.RDBStorage(url)

The system packages these helpers need (``postgresql``, ``chromium``) are installed by
``scripts/install-system-deps.sh``; a missing one makes the test FAIL with that hint, never
skip, so CI cannot silently lose coverage.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest


INSTALL_HINT = (
    "run `sudo scripts/install-system-deps.sh` (Debian: apt-get install chromium postgresql)"
)
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags for the system Chromium: headless, no sandbox (containers run as root), no network
beyond the pages the test opens."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, *, timeout: float = 30.0, process: subprocess.Popen | None = None
) -> None:
    """Block until ``url`` answers an HTTP request (any status), or fail the test.

    Args:
        url: The URL to poll.
        timeout: Seconds to wait before failing.
        process: The server process; if it exits first, fail at once with its output.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(
                f"server exited with {process.returncode} before answering {url}:\n{output}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return
        except urllib.error.HTTPError:
            return  # It answered; the status is the caller's business.
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = exc
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout} s (last error: {last_error!r})")


@contextlib.contextmanager
def running_process(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> Iterator[subprocess.Popen]:
    """Start ``args`` as a child process and always terminate it (then kill) on exit."""
    process = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def chromium_executable() -> str:
    """Path of Debian's Chromium, or fail the test with the install hint."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(f"{CHROMIUM_PATH} not found; {INSTALL_HINT}.")
    return CHROMIUM_PATH


def postgres_bin_dir() -> str:
    """The newest ``/usr/lib/postgresql/<version>/bin``, or fail the test with the install hint."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        pytest.fail(
            f"PostgreSQL server binaries not found under /usr/lib/postgresql; {INSTALL_HINT}."
        )
    newest = max(
        candidates, key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0
    )
    return os.path.dirname(newest)


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    # PostgreSQL refuses to run as root: run the server as the "postgres" account the Debian
    # package creates, and hand it the data directory.
    if os.geteuid() != 0:
        return [], None, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            f"running as root but there is no 'postgres' user to run the server; {INSTALL_HINT}."
        )
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root, and `runuser` (util-linux) is missing to drop privileges.")
    return [runuser, "-u", "postgres", "--"], account.pw_uid, account.pw_gid


def _run(args: Sequence[str], *, cwd: str, what: str) -> None:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@contextlib.contextmanager
def postgres_server(*, database: str = "kmtpe", user: str = "kmtpe") -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, yielding a SQLAlchemy URL.

    Creates a cluster with ``initdb`` in a fresh temporary directory (as the ``postgres``
    account when running as root), starts it on a free loopback port with durability off
    (it is thrown away), creates ``database`` owned by ``user`` (trust authentication on
    loopback only), and on exit stops the server and deletes the directory, also when the
    body raised.

    Yields:
        ``postgresql+psycopg2://<user>@127.0.0.1:<port>/<database>``.
    """
    bin_dir = postgres_bin_dir()
    prefix, uid, gid = _as_server_user()
    data_root = tempfile.mkdtemp(prefix="kmtpe-pg-")
    data_dir = os.path.join(data_root, "data")
    log_file = os.path.join(data_root, "server.log")
    started = False
    try:
        if uid is not None and gid is not None:
            os.chown(data_root, uid, gid)
        _run(
            [
                *prefix,
                f"{bin_dir}/initdb",
                "-D",
                data_dir,
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=data_root,
            what="initdb",
        )
        for attempt in range(3):
            port = free_port()
            options = (
                f"-h 127.0.0.1 -p {port} -k {data_root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    [
                        *prefix,
                        f"{bin_dir}/pg_ctl",
                        "-D",
                        data_dir,
                        "-o",
                        options,
                        "-l",
                        log_file,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    cwd=data_root,
                    what="pg_ctl start",
                )
                started = True
                break
            except RuntimeError:
                if attempt == 2:  # The port was taken in between, three times: give up.
                    with open(log_file, errors="replace") as log:
                        raise RuntimeError(f"PostgreSQL did not start:\n{log.read()}") from None
        _run(
            [f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
            cwd=data_root,
            what="createdb",
        )
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run(
                [*prefix, f"{bin_dir}/pg_ctl", "-D", data_dir, "-m", "immediate", "-w", "stop"],
                cwd=data_root,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(data_root, ignore_errors=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Pytest fixture form of :func:`postgres_server` (import it into a conftest to use it)."""
    with postgres_server() as url:
        yield url
