"""Update benchmark: download + install + switch time of a release, roll-back time, size of an update.

Everything real except systemd: release archives built from this tree (``comptoir release build``'s
reproducible wheel, plus the dependency wheels of ``--wheelhouse`` if given), a TUF repository signed
with python-tuf and served over HTTPS on 127.0.0.1 (a test CA made with cryptography), the box side
through ``ngclient`` (:class:`sync.update_agent.TufArchiveSource`), the agent's state machine with its
fsynced journal, the release hooks run as subprocesses (migrate, selftest), the atomic ``current``
switch. The units' restart is a *fake* restarter (``BenchFakeRestarter``) that writes the health
reports at once, so "health" is the agent's own cost, not the kiosk's start-up.

Each round starts from a box provisioned with 0.1.0 and installs 0.2.0 (one more migration); then a
second box installs 0.2.0 with a failing health component to time the roll-back. Peers in the same
run: a plain recursive copy (and fsync) of the installed release tree next to the install, the archive
size next to the installed size and a gzip of the tree.

    python bench/update.py [--quick] [--rounds N] [--wheelhouse DIR] [--dir D]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import ipaddress
import os
import shutil
import ssl
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.store.migrations import MIGRATIONS
from appliance.updates.agent import UpdateAgent, UpdateConfig
from appliance.updates.archive import build_archive, build_wheel, project_files
from appliance.updates.health import COMPONENTS, report
from appliance.updates.layout import Layout
from appliance.updates.repository import Repository, generate_keys
from sync.update_agent import TufArchiveSource, TufSettings

ROOT: Final = Path(__file__).resolve().parent.parent
TOTAL_LIMIT_S: Final = 60.0
"""Download + install + switch + health on a box: well inside the health deadline and a pharmacy's lunch break."""
EXTRA_MIGRATION: Final = """

MIGRATIONS.append(Migration(len(MIGRATIONS) + 1, "bench", "CREATE TABLE bench_probe (id INTEGER PRIMARY KEY);"))
"""
PHASES: Final = (
    ("download (TUF refresh + HTTPS)", "started", "downloaded"),
    ("install (unpack + fsync)", "downloaded", "installed"),
    ("migrate hook", "installed", "migrated"),
    ("selftest hook", "migrated", "verified"),
    ("switch current", "switching", "switched"),
    ("restart (fake) + health", "switched", "healthy"),
    ("commit", "healthy", "committed"),
)


class BenchFakeRestarter:
    """Not systemd: writes every component's health report for ``current`` at once (or a failing one)."""

    def __init__(self, layout: Layout, *, failing: Sequence[str] = ()) -> None:
        self.layout, self.failing = layout, tuple(failing)

    def restart(self, units: Sequence[str]) -> None:
        version = self.layout.current_version() or "?"
        for component in COMPONENTS:
            report(self.layout.health, component, version=version, ok=component not in self.failing)


def _release(out: Path, version: str, wheelhouse: Path | None, *, extra: bool) -> Path:
    files = project_files(ROOT)
    if extra:
        files["appliance/store/migrations.py"] += EXTRA_MIGRATION.encode()
    wheels = [build_wheel(out / f"w-{version}", name="comptoir", version=version, files=files)]
    if wheelhouse is not None:
        wheels += sorted(p for p in wheelhouse.glob("*.whl") if not p.name.startswith("comptoir-"))
    schema = MIGRATIONS[-1].version + (1 if extra else 0)
    return build_archive(out, version=version, wheels=wheels, schema_version=schema)[0]


def _tls(d: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    paths[2].write_bytes(pem)
    return paths


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def https_server(directory: Path, cert: Path, key: Path) -> Iterator[str]:
    def handler(*args: Any, **kwargs: Any) -> _Quiet:
        return _Quiet(*args, directory=str(directory), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _copy_and_fsync(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)
    for dirpath, _dirs, files in os.walk(dst):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


@dataclass
class Report:
    phases: dict[str, list[float]] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)
    rollbacks: list[float] = field(default_factory=list)
    plain_copies: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def _timed_agent(
    layout: Layout, db: Path, source: TufArchiveSource, failing: Sequence[str]
) -> tuple[UpdateAgent, dict[str, float]]:
    marks: dict[str, float] = {}

    def on_step(step: str) -> None:
        marks.setdefault(step, time.perf_counter())

    config = UpdateConfig(layout=layout, db_path=db, box_id="bench", health_deadline=0.5, python=sys.executable)
    agent = UpdateAgent(config, source=source, restarter=BenchFakeRestarter(layout, failing=failing), on_step=on_step)
    return agent, marks


def run_benchmark(args: argparse.Namespace) -> Report:
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="comptoir-bench-update-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        old = _release(tmp / "dist", "0.1.0", args.wheelhouse, extra=False)
        new = _release(tmp / "dist", "0.2.0", args.wheelhouse, extra=True)
        ca, cert, key = _tls(tmp)
        www = tmp / "www"
        keys = tmp / "keys"
        generate_keys(keys)
        repo = Repository(www, keys)
        repo.init()
        repo.publish(new, channel="stable")
        template = tmp / "template"
        layout = Layout.under(template)
        source_none: Any = None
        provisioner, _ = _timed_agent(layout, template / "comptoir.db", source_none, ())
        provisioner.provision(old)
        rep.sizes = {
            "archive 0.2.0 (downloaded)": new.stat().st_size,
            "TUF metadata (downloaded)": sum(p.stat().st_size for p in (www / "metadata").glob("*.json")),
            "installed release tree": _tree_size(layout.release_dir("0.1.0")),
        }
        gz = tmp / "tree.tar.gz"
        with tarfile.open(gz, "w:gz") as tar:
            tar.add(layout.release_dir("0.1.0"), arcname="release")
        rep.sizes["peer: gzip of the installed tree"] = gz.stat().st_size
        with https_server(www, cert, key) as url:
            for round_ in range(args.rounds):
                for kind in ("install", "rollback"):
                    box = tmp / f"box-{round_}-{kind}"
                    shutil.copytree(template, box, symlinks=True)
                    blayout = Layout.under(box)
                    blayout.tuf_metadata.mkdir(parents=True, exist_ok=True)
                    shutil.copy(www / "metadata" / "1.root.json", blayout.tuf_metadata / "root.json")
                    source = TufArchiveSource(
                        TufSettings(f"{url}/metadata/", f"{url}/targets/", blayout.tuf_metadata, ca_file=ca)
                    )
                    agent, marks = _timed_agent(
                        blayout, box / "comptoir.db", source, ("kiosk",) if kind == "rollback" else ()
                    )
                    start = time.perf_counter()
                    outcome = agent.install("0.2.0")
                    end = time.perf_counter()
                    rep.outcomes.append(f"{kind}:{outcome.result}")
                    if kind == "install":
                        rep.totals.append(end - start)
                        for label, a, b in PHASES:
                            rep.phases.setdefault(label, []).append(marks[b] - marks[a])
                        t0 = time.perf_counter()
                        _copy_and_fsync(blayout.release_dir("0.2.0"), box / "plain-copy")
                        rep.plain_copies.append(time.perf_counter() - t0)
                    else:
                        rep.rollbacks.append(marks["rolled_back"] - marks["rollback"])
                    shutil.rmtree(box)
    return rep


def _ms(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def print_report(rep: Report, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    house = args.wheelhouse or "none (comptoir wheel only)"
    out(f"update benchmark: {args.rounds} round(s), 0.1.0 -> 0.2.0, wheelhouse: {house}")
    out("")
    out(f"{'phase':<42} {'median ms':>10} {'p95 ms':>10}")
    for label, values in rep.phases.items():
        med, p95 = _ms(values)
        out(f"{label:<42} {med:>10.1f} {p95:>10.1f}")
    med, p95 = _ms(rep.totals)
    verdict = "ok" if p95 < TOTAL_LIMIT_S * 1000 else "OVER"
    total = "download + install + switch + health"
    out(f"{total:<42} {med:>10.1f} {p95:>10.1f}   limit {TOTAL_LIMIT_S * 1000:.0f} ms: {verdict}")
    med, p95 = _ms(rep.plain_copies)
    out(f"{'peer: plain copy + fsync of the release':<42} {med:>10.1f} {p95:>10.1f}")
    med, p95 = _ms(rep.rollbacks)
    out(f"{'rollback (switch back + restart)':<42} {med:>10.1f} {p95:>10.1f}")
    out("")
    out(f"{'size':<42} {'bytes':>12} {'× archive':>10}")
    base = rep.sizes["archive 0.2.0 (downloaded)"]
    for label, size in rep.sizes.items():
        out(f"{label:<42} {size:>12,} {size / base:>10.2f}")
    out("")
    out("outcomes: " + ", ".join(sorted(set(rep.outcomes))))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wheelhouse", type=Path, help="dependency wheels to put in the archives")
    parser.add_argument("--dir", type=Path, help="where the temporary files go (the disk to measure)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(run_benchmark(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
