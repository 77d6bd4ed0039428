"""Kiosk benchmark: cold start to the attract screen, memory over many sessions, scan-to-screen latency.

The kiosk runs offscreen (``SDL_VIDEODRIVER=offscreen``, Mesa llvmpipe: software rendering, so frame
times are pessimistic against a Pi's GPU) against the sandbox teleservices on 127.0.0.1, wired by
the box's composition root (``ui.production.build_production``, on a configuration file as installation
writes it, PIN login). Every figure is printed beside its
target (DESIGN §8 and issue 15) in the same run: a scan reflected on screen in under 100 ms (p99, every
kind of scan), kiosk memory under 200 MB and flat over the sessions, cold start under 2 s.

The sandbox runs in a process of its own, as on the device (where it is not there at all), so the
kiosk's RSS is its own; a second, shorter run with the sandbox inside the kiosk's process (the set-up
the issue was measured with) gives the sandbox's share.

- cold start: a fresh process (interpreter, imports, database, kv screens) until the first frame that
  shows the attract screen, timed from the parent's ``Popen``;
- memory: resident set size on the attract screen, after the first session and every few sessions
  (apCV, attestation, ePrescription, three boxes, control, PIN validation, close), the peak (VmHWM), and
  the growth per session once warm; ``--soak`` plays 1,000 sessions;
- scan-to-screen: a ScanEvent handed to the controller (as a driver would) until the first frame
  swapped after the view model applied the answer, for each kind of scan: the session's own scans
  (apCV, attestation and ePrescription answer from the sandbox on 127.0.0.1, boxes), then samples of a
  box accepted, a box refused (its serial already scanned) and an unreadable code on the attract screen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SCAN_MS = 100.0
TARGET_MEMORY_MB = 200.0
TARGET_COLD_START_S = 2.0
TARGET_GROWTH_KB = 2.0
"""Flat: at most 2 KB a session once warm (2 MB over 1,000 sessions; a box serves hundreds a day)."""
SOAK_SESSIONS = 1000
APCV = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
AMC = b"AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"
UNREADABLE = b"0103400930000121172705311\x1d21X"
PIN = "2468"
BOXES = (("3400930000120", "270531"), ("3400930000120", "270531"), ("3400930000649", "270930"))
SCAN_KINDS = (
    ("apcv", "apCV identified (apCV, INSi, ADRi on 127.0.0.1)"),
    ("attestation", "mutuelle attestation read (IDB on 127.0.0.1)"),
    ("eprescription", "ePrescription fetched (on 127.0.0.1)"),
    ("session-box", "box accepted, in the sessions"),
    ("box", "box accepted"),
    ("box-refused", "box refused (serial already scanned)"),
    ("unreadable", "unreadable code refused"),
)
"""Timed kinds of scan, in the table's order: the session's own scans, then the latency samples."""
RENDERER_LIBRARIES = ("libLLVM", "/dri/", "libgallium", "libglapi", "libGLX_mesa", "libEGL_mesa")
"""Mesa's software renderer (llvmpipe): its libraries' resident pages are counted apart."""


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np  # here: the bare peer's process must not carry it

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux /proc)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The highest resident set size this process reached (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dirty_mb() -> float:
    """Dirty pages of this process (``/proc/self/smaps_rollup``): what the kernel cannot take back under
    pressure. The rest of the RSS is clean pages of mapped files (libLLVM's code, for one: 48 of its 56 MB),
    page cache that is dropped and read again when memory runs short."""
    kb = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Dirty", "Shared_Dirty"):
            kb += int(value.split()[0])
    return kb / 1024


def renderer_mb() -> tuple[float, float]:
    """Resident and dirty pages of the software renderer's libraries mapped in this process
    (``/proc/self/smaps``)."""
    rss_kb, dirty_kb, counted = 0, 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
            counted = len(head) > 5 and any(name in head[5] for name in RENDERER_LIBRARIES)
        elif counted and head[:1] == ["Rss:"]:
            rss_kb += int(head[1])
        elif counted and head[:1] in (["Private_Dirty:"], ["Shared_Dirty:"]):
            dirty_kb += int(head[1])
    return rss_kb / 1024, dirty_kb / 1024


@dataclass
class Report:
    cold_start_s: list[float] = field(default_factory=list)
    rss_mb: dict[int, float] = field(default_factory=dict)
    """RSS after that many sessions (0: on the attract screen, logged in, before the first)."""
    peak_mb: float = 0.0
    renderer_mb: float = 0.0
    renderer_dirty_mb: float = 0.0
    dirty_mb: dict[int, float] = field(default_factory=dict)
    """Dirty pages (see ``dirty_mb``) at the same points as ``rss_mb``."""
    bare_dirty_mb: float = float("nan")
    sessions: int = 0
    refused: list[str] = field(default_factory=list)
    scans_ms: dict[str, list[float]] = field(default_factory=dict)
    """Scan-to-screen samples by kind (see ``SCAN_KINDS``)."""
    split_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Where each sample's time went, by kind: ``handle`` (Counter.handle on the worker), ``copy`` (the
    session's deep copy for roll-back, inside it), ``apply`` (view model and kv on the UI thread)."""
    sandbox_mb: float = float("nan")
    """RSS of the sandbox's own process at the end."""
    bare_mb: float = float("nan")
    """The peer: RSS of a bare Kivy app (one label) drawn in the same offscreen window."""
    inprocess_rss_mb: dict[int, float] = field(default_factory=dict)
    """RSS by session of the comparison run with the sandbox inside the kiosk's process."""
    gc_ms: dict[str, list[float]] = field(default_factory=dict)
    """Pauses of the full collections (generation 2) during the sessions and the samples: ``automatic``
    (triggered by allocations, anywhere) and ``between patients`` (the kiosk's own, after a session)."""
    ecps_rss_mb: dict[int, float] = field(default_factory=dict)
    """RSS by session of the run on a box with ``[psc]`` configured (the e-CPS login offered)."""
    ecps_modules: list[str] = field(default_factory=list)
    """The e-CPS client's libraries (authlib, joserfc) loaded in that run."""
    foreign_modules: list[str] = field(default_factory=list)
    """Modules of the sandbox, the bench and the e-CPS client found in the kiosk's process (none: it is
    the box's composition, the sandbox elsewhere, PIN login)."""
    load: tuple[float, float] = (float("nan"), float("nan"))
    """The machine's 1-minute load average at the start and at the end."""
    seconds: float = 0.0

    @property
    def box_ms(self) -> list[float]:
        return self.scans_ms.get("box", [])

    @property
    def unreadable_ms(self) -> list[float]:
        return self.scans_ms.get("unreadable", [])


def _offscreen_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SDL_VIDEODRIVER": "offscreen",
        "KIVY_NO_ARGS": "1",
        "KIVY_NO_CONSOLELOG": "1",
        "KIVY_LOG_MODE": "PYTHON",
        "KIVY_HOME": str(home),
    }


# ---------------------------------------------------------------------------------------------- children
def bare_child(args: argparse.Namespace) -> int:
    """The peer: a bare Kivy app showing one label in the same offscreen window (interpreter, Kivy,
    SDL and Mesa's software GL), its RSS once the label is drawn: the floor the kiosk stands on here."""
    from kivy.config import Config

    width, height = args.display.split("x")
    for key, value in (("width", width), ("height", height), ("fullscreen", "0"), ("resizable", "0")):
        Config.set("graphics", key, value)
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.uix.label import Label

    out: dict[str, float] = {}

    class Bare(App):  # type: ignore[misc]
        def build(self) -> Any:
            return Label(text="Bienvenue", font_size=48)

        def on_start(self) -> None:
            def shown(*_: Any) -> None:
                Window.unbind(on_flip=shown)
                Clock.schedule_once(lambda _dt: (out.update(rss=rss_mb(), dirty=dirty_mb()), self.stop()), 0.3)

            Window.bind(on_flip=shown)

    Bare().run()
    print(json.dumps(out))
    return 0


def sandbox_child(args: argparse.Namespace) -> int:
    """The sandbox in its own process: prints its URL and the ePrescription ids, serves until stdin ends."""
    from appliance.scenario import START
    from bench.population import bench_population
    from sandbox.server import SandboxServer

    population, rx_ids = bench_population(args.sessions + 1)  # +1: the latency part's
    server = SandboxServer(port=0, population=population, today=lambda: START.date())
    print(json.dumps({"url": server.start(), "rx_ids": rx_ids, "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()  # the parent closes it when done (or dies)
    finally:
        server.stop()
    return 0


FIELD_KEEPS = frozenset({"setuptools", "pkg_resources", "_distutils_hack", "pip"})
"""In every virtual environment, the box's included."""


def dev_only_packages() -> list[str]:
    """Top-level import names of the installed distributions a box does not install: not in the closure of
    comptoir's own requirements (no extras). The bench runs in the development environment, where selenium
    brings trio (which httpcore then loads, 4 MB) and the like; the kiosk child refuses them so that its
    memory is the one of a box's environment (``image-build/`` installs the requirements alone)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    field: set[str] = set()
    todo = ["comptoir"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in field:
            continue
        field.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(
        top
        for top, dists in metadata.packages_distributions().items()
        if top not in FIELD_KEEPS and all(canonicalize_name(d) not in field for d in dists)
    )


def prepare_box(directory: Path, base_url: str, *, ecps: bool = False) -> Path:
    """What installation and enrolment leave on a box before the kiosk first starts: the field key, the
    database migrated, with the pharmacy's FINESS and name (the sandbox's test pharmacy) and the pharmacist
    with her PIN, and the kiosk's configuration file (no scanner, no card reader: the bench plays the scans).
    Done here, in the parent, so that the kiosk's process loads nothing the box's would not. With ``ecps``
    the file has a ``[psc]`` table too: the panel offers the e-CPS login (its client is built at start;
    nothing connects until a professional chooses it, which the sessions do not)."""
    from appliance.domain import Role
    from appliance.store import operators
    from appliance.store.database import open_database, set_setting, transaction
    from appliance.store.sealing import FieldCipher
    from sandbox.dmp_registry import TEST_PHARMACY

    directory.mkdir(parents=True)
    key, database = directory / "fields.key", directory / "comptoir.db"
    FieldCipher.create_key(key)
    db = open_database(database, key_file=key)
    try:
        operators.add_operator(db, "alice", Role.PHARMACIEN, PIN)
        with transaction(db) as conn:
            for name, value in TEST_PHARMACY.items():
                set_setting(conn, name, value)
    finally:
        db.close()
    text = (
        f'[store]\ndatabase = "{database}"\nkey = "{key}"\n'
        f'[teleservices]\nbase_url = "{base_url}"\n[cards]\nenabled = false\n'
    )
    if ecps:
        secret = directory / "psc-client-secret"
        secret.write_text("bench-secret\n", encoding="utf-8")
        text += f'[psc]\nissuer = "{base_url}/psc"\nclient_id = "comptoir-bench"\nclient_secret_file = "{secret}"\n'
    config = directory / "kiosk.toml"
    config.write_text(text, encoding="utf-8")
    return config


@dataclass
class BenchKiosk:
    """The parts of the running kiosk the sessions drive and probe."""

    vm: Any
    controller: Any
    devices: Any
    clock: Any
    base_url: str


def child(mode: str, args: argparse.Namespace) -> int:
    """Runs inside the offscreen process: ``coldstart`` prints when the attract screen is on screen;
    ``run`` plays the sessions and the latency samples and prints the measures as JSON.

    The kiosk is the box's: ``ui.production.build_production`` on the configuration file ``--box`` names
    (without ``[psc]``: PIN login), on a clock started on the sandbox population's day (``--start``).
    With ``--sandbox-url`` the sandbox is another process's; without, it runs inside this one (the
    comparison). ``--refuse`` names the packages to treat as not installed."""
    if args.refuse:
        from appliance.lean_import import RefuseImports

        sys.meta_path.insert(0, RefuseImports([n for n in args.refuse.split(",") if n not in sys.modules]))
    from datetime import datetime

    from ui.config import KioskConfig
    from ui.production import load_config

    kiosk_config = KioskConfig.preset(args.display).with_options(fullscreen=False, thanks_s=0.0, banner_s=2.0)
    config = replace(load_config(Path(args.box), env={}), kiosk=kiosk_config)
    from ui.app import configure_kivy

    configure_kivy(kiosk_config)
    from kivy.core.window import Window

    from ui.app import build_app, kivy_post
    from ui.clock import KioskClock
    from ui.driving import run_script
    from ui.production import build_production
    from ui.simulated import SimulatedDevices

    rx_ids: list[str] = json.loads(Path(args.rx_ids).read_text()) if args.rx_ids else []
    out: dict[str, Any] = {}
    start = datetime.fromisoformat(args.start)
    with contextlib.ExitStack() as stack:
        if args.sandbox_url is None:
            from bench.population import bench_population
            from sandbox.server import SandboxServer

            population, rx_ids = bench_population(args.sessions + 1)
            server = SandboxServer(port=0, population=population, today=start.date)
            config = replace(config, teleservices_url=server.start())
            stack.callback(server.stop)
        clock = KioskClock(start)
        production = build_production(config, kivy_post, clock=clock)
        stack.callback(production.close)
        controller = production.controller
        kiosk = BenchKiosk(production.vm, controller, SimulatedDevices(controller), clock, config.teleservices_url)

        def ready(app: Any) -> None:
            if mode == "coldstart":

                def shown(*_: Any) -> None:
                    if kiosk.vm.screen == "attract" and app.kiosk.ids.sm.current == "attract":
                        out["attract_at"] = time.time()
                        Window.unbind(on_flip=shown)
                        app.stop()

                Window.bind(on_flip=shown)
                return

            def failed(error: BaseException) -> None:
                out["error"] = repr(error)
                app.stop()

            run_script(_measure(kiosk, rx_ids, args, out), on_done=app.stop, on_error=failed)

        build_app(production.vm, kiosk_config, tick=controller.tick, on_ready=ready).run()
        out["foreign_modules"] = sorted(
            name for name in sys.modules if name.partition(".")[0] in {"sandbox", "bench", "authlib", "joserfc"}
        )
    print(json.dumps(out, default=list))  # the samples' arrays
    return 0 if "error" not in out else 1


def _rss_points(sessions: int) -> set[int]:
    """After which sessions the RSS is read: the first, every 10 up to 100, every 50 after, the last."""
    return {1, sessions, *range(10, min(sessions, 100) + 1, 10), *range(150, sessions + 1, 50)}


def _sandbox_call(method: str, url: str) -> None:
    """The bench's own calls to the sandbox, with the standard library: an ``httpx`` client made for each
    (an SSL context with certifi's bundle every time) would be counted in the kiosk's memory."""
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5):  # noqa: S310 (127.0.0.1)
        pass


def _measure(kiosk: Any, rx_ids: list[str], args: argparse.Namespace, out: dict[str, Any]) -> Any:
    from kivy.core.window import Window

    from appliance.workflow.events import Scanned

    vm, devices, controller = kiosk.vm, kiosk.devices, kiosk.controller
    counter = controller.counter
    # samples in arrays, 8 bytes each, not a float object's 32: the bench's own lists live in the process it
    # measures (a list of floats was 1 MB of the RSS after 1,000 sessions)
    refused: list[str] = []
    samples: dict[str, array[float]] = {}
    split: dict[str, dict[str, array[float]]] = {}
    out.update(rss={}, dirty={}, refused=refused, scans_ms=samples, split_ms=split)
    now = {"label": ""}
    """What the scan being injected is timed as (empty: not timed)."""
    pending: dict[str, float] = {}
    spent: dict[str, float] = {}

    # Probes on this process's objects (production code untouched): the worker's share of a scan, the
    # session's copy inside it, the view model's share; the end is the first swap after the answer.
    real_handle, real_snapshot, real_finished = counter.handle, counter._snapshot, vm.finished

    def handle(event: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_handle(event)
        finally:
            if isinstance(event, Scanned):  # events run one at a time on the worker: this copy is its own
                spent["handle"], spent["copy"] = time.perf_counter() - started, spent.pop("copying", 0.0)

    def snapshot() -> Any:
        started = time.perf_counter()
        try:
            return real_snapshot()
        finally:
            spent["copying"] = time.perf_counter() - started

    def finished(result: Any) -> None:
        started = time.perf_counter()
        real_finished(result)
        if result.kind == "scan" and now["label"]:
            pending["injected"], pending["apply"] = result.injected_at, time.perf_counter() - started
            pending["handle"], pending["copy"] = spent.get("handle", 0.0), spent.get("copy", 0.0)

    real_flip = Window.flip

    def flip() -> None:
        real_flip()
        if "injected" in pending:
            label = now["label"]
            samples.setdefault(label, array("d")).append((time.perf_counter() - pending.pop("injected")) * 1000)
            parts = split.setdefault(label, {"handle": array("d"), "copy": array("d"), "apply": array("d")})
            for part in parts:
                parts[part].append(pending.pop(part) * 1000)

    counter.handle, counter._snapshot, vm.finished, Window.flip = handle, snapshot, finished, flip
    pauses: dict[str, array[float]] = {"automatic": array("d"), "between patients": array("d")}
    out["gc_ms"] = pauses
    collecting: dict[str, Any] = {"quiet": False}

    def collector(phase: str, info: dict[str, int]) -> None:
        """The cyclic collector's pauses (all threads wait for it): full collections, the kiosk's own
        between patients apart from those the allocations trigger."""
        if phase == "start":
            collecting["since"] = time.perf_counter()
        elif "since" in collecting and info.get("generation") == 2:
            kind = "between patients" if collecting["quiet"] else "automatic"
            pauses[kind].append((time.perf_counter() - collecting.pop("since")) * 1000)

    import gc

    import ui.app

    real_collect = ui.app.collect_between_patients

    def collect_between_patients() -> None:
        collecting["quiet"] = True
        try:
            real_collect()
        finally:
            collecting["quiet"] = False

    gc.callbacks.append(collector)
    ui.app.collect_between_patients = collect_between_patients

    def settled() -> bool:
        return bool(controller.idle and not vm.busy)

    def sampled() -> bool:
        return "injected" not in pending and settled()

    def act(action: Any, label: str = "", *, refusal: bool = False) -> Any:
        """Send one event and wait for its answer (and, timed, for the frame that shows it); an answer
        other than the one expected (``refusal``) is kept in ``refused``."""
        now["label"] = label
        action()
        yield sampled if label else settled
        now["label"] = ""
        outcome = vm.last_result.outcome if vm.last_result else None
        if outcome is not None and outcome.accepted == refusal:
            refused.append(str(outcome.message) if refusal is False else f"accepted: {label or 'event'}")

    yield 0.3
    controller.intent("login", operator="alice", pin=PIN)
    yield settled
    yield 0.1  # the start-up collection runs after the first frames
    out["rss"][0], out["dirty"][0] = rss_mb(), dirty_mb()
    sessions, spare = rx_ids[: args.sessions], rx_ids[args.sessions]
    points = _rss_points(len(sessions))
    for number, rx_id in enumerate(sessions, start=1):
        _sandbox_call("DELETE", f"{kiosk.base_url}/_sandbox/faults")
        _sandbox_call("POST", f"{kiosk.base_url}/_sandbox/reset")
        yield from act(lambda: devices.scan(APCV), "apcv")
        yield from act(lambda: devices.scan(AMC), "attestation")
        yield from act(lambda rx_id=rx_id: devices.scan(rx_id.encode("ascii")), "eprescription")
        yield from act(lambda: controller.intent("confirm_prescription", renewal=0))
        for k, (cip13, expiry) in enumerate(BOXES):
            raw = f"010{cip13}17{expiry}10LOT1\x1d21K{number:06d}S{k}".encode("ascii")
            yield from act(lambda raw=raw: devices.scan(raw), "session-box")
        yield from act(lambda: controller.intent("continue"))
        yield from act(lambda: controller.intent("validate", pin=PIN))
        yield from act(lambda: controller.intent("close"))
        if vm.step != "attract":
            yield from act(lambda: controller.intent("cancel"))
        kiosk.clock.advance(240)
        if number in points:
            yield 0.05  # the frame after the close: the kiosk's collection between patients has run
            out["rss"][number], out["dirty"][number] = rss_mb(), dirty_mb()
    out["peak"] = peak_rss_mb()
    out["renderer"] = renderer_mb()

    # scan-to-screen samples: each answer must change the screen, so the message is cleared first
    for _ in range(args.samples):
        vm.message = ""
        yield 0.05
        yield from act(lambda: devices.scan(UNREADABLE), "unreadable", refusal=True)
        yield 0.02
    yield from act(lambda: devices.scan(APCV))
    yield from act(lambda: devices.scan(rx_ids[0].encode("ascii")), refusal=True)  # already dispensed: stays
    yield from act(lambda: devices.scan(spare.encode("ascii")))
    yield from act(lambda: controller.intent("confirm_prescription", renewal=0))
    for i in range(args.samples):
        serial = f"LAT{i:06d}"
        yield from act(lambda serial=serial: devices.box("3400930000120", serial), "box")
        vm.message = ""
        yield 0.02
        yield from act(lambda serial=serial: devices.box("3400930000120", serial), "box-refused", refusal=True)
        yield from act(lambda serial=serial: controller.intent("remove_box", serial=serial))
        yield 0.02
    Window.flip = real_flip
    gc.callbacks.remove(collector)
    ui.app.collect_between_patients = real_collect


# ---------------------------------------------------------------------------------------------- parent
def _run_child(script: Path, env: dict[str, str], mode: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 (this script, by its path)
        [sys.executable, str(script), "--child", mode, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kiosk benchmark child ({mode}) failed:\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _by_session(figures: dict[str, Any]) -> dict[int, float]:
    """A child's figures by session number (JSON keys are strings)."""
    return {int(k): float(v) for k, v in figures.items()}


def run_benchmark(args: argparse.Namespace) -> Report:
    from appliance.scenario import START

    report = Report()
    started = time.perf_counter()
    report.load = (os.getloadavg()[0], float("nan"))
    script = Path(__file__).resolve()
    display = ["--display", args.display]
    with tempfile.TemporaryDirectory(prefix="comptoir-bench-kivy-") as home:
        env = _offscreen_env(Path(home))
        sandbox = subprocess.Popen(  # noqa: S603 (this script, by its path)
            [sys.executable, str(script), "--child", "sandbox", "--sessions", str(args.sessions)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sandbox.stdout is not None and sandbox.stdin is not None
            line = sandbox.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox process did not start")
            served = json.loads(line)
            ids_path = Path(home) / "rx-ids.json"
            ids_path.write_text(json.dumps(served["rx_ids"]))
            refuse = ["--refuse", ",".join(dev_only_packages())]
            ecps_refused: list[str] = []
            boxes = iter(range(args.cold_starts + 3))

            def box(url: str, *, ecps: bool = False) -> list[str]:
                """A freshly installed box's configuration for the next child, and the population's day."""
                path = prepare_box(Path(home) / f"box-{next(boxes)}", url, ecps=ecps)
                return ["--box", str(path), "--start", START.isoformat()]

            external = ["--sandbox-url", served["url"], "--rx-ids", str(ids_path), *refuse, *display]
            for _ in range(args.cold_starts):
                installed = box(served["url"])
                spawned = time.time()
                shown = _run_child(script, env, "coldstart", [*external, *installed], 120)
                report.cold_start_s.append(shown["attract_at"] - spawned)
            counts = ["--sessions", str(args.sessions), "--samples", str(args.samples)]
            installed = box(served["url"])
            measured = _run_child(script, env, "run", [*counts, *external, *installed], 300 + 5 * args.sessions)
            report.sandbox_mb = rss_mb(served["pid"])
            if args.ecps_sessions > 0:  # the same box with the e-CPS login configured
                counts = ["--sessions", str(args.ecps_sessions), "--samples", "0"]
                installed = box(served["url"], ecps=True)
                with_ecps = _run_child(
                    script, env, "run", [*counts, *external, *installed], 300 + 5 * args.ecps_sessions
                )
                report.ecps_rss_mb = _by_session(with_ecps["rss"])
                report.ecps_modules = [m for m in with_ecps["foreign_modules"] if m.startswith(("authlib", "joserfc"))]
                ecps_refused = [f"e-CPS box: {message}" for message in with_ecps["refused"]]
            bare = _run_child(script, env, "bare", display, 120)
            report.bare_mb, report.bare_dirty_mb = float(bare["rss"]), float(bare["dirty"])
        finally:
            if sandbox.stdin is not None:
                sandbox.stdin.close()
            sandbox.wait(timeout=30)
        if args.inprocess_sessions > 0:  # the sandbox inside the kiosk's process, as the issue measured
            counts = ["--sessions", str(args.inprocess_sessions), "--samples", "0"]
            installed = box("http://127.0.0.1:9")  # the child starts the sandbox and points the kiosk at it
            inside = _run_child(script, env, "run", [*counts, *display, *installed], 300 + 5 * args.inprocess_sessions)
            report.inprocess_rss_mb = _by_session(inside["rss"])
    report.rss_mb = _by_session(measured["rss"])
    report.peak_mb = float(measured["peak"])
    report.renderer_mb, report.renderer_dirty_mb = (float(v) for v in measured["renderer"])
    report.dirty_mb = _by_session(measured["dirty"])
    report.sessions = args.sessions
    report.refused = [*measured["refused"], *ecps_refused]
    report.foreign_modules = list(measured["foreign_modules"])
    report.gc_ms = {k: list(v) for k, v in measured["gc_ms"].items()}
    report.scans_ms = {k: list(v) for k, v in measured["scans_ms"].items()}
    report.split_ms = {k: {p: list(v) for p, v in parts.items()} for k, parts in measured["split_ms"].items()}
    report.load = (report.load[0], os.getloadavg()[0])
    report.seconds = time.perf_counter() - started
    return report


def _verdict(value: float, limit: float) -> str:
    return f"{value / limit:.2f} of target, {'ok' if value <= limit else 'OVER'}"


def warm_window(rss: dict[int, float]) -> tuple[int, int]:
    """The sessions between which growth is read: from the 10th (100th past 200 sessions) to the last,
    after the first sessions' one-time costs (lazy imports, caches, Argon2 arenas, fonts)."""
    last = max(rss)
    first = min(k for k in rss if k > 0)
    for warm in (100, 10):
        if warm in rss and last >= 2 * warm:
            return warm, last
    return first, last


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    header = ("measure", "value", "target", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def _beside(other: dict[int, float], rss: dict[int, float], digits: int) -> str:
    """Another run's RSS against the main run's, on the attract screen and after its last session."""
    n = max(other)
    shares = [f"attract +{other[0] - rss.get(0, float('nan')):.{digits}f} MB ({other[0]:.{digits}f} MB)"]
    if n in rss:
        shares.append(f"after {n} sessions +{other[n] - rss[n]:.{digits}f} MB ({other[n]:.{digits}f} MB)")
    return ", ".join(shares)


def format_report(report: Report, args: argparse.Namespace) -> str:
    rss = report.rss_mb
    base = rss.get(0, float("nan"))
    first, last = min(k for k in rss if k > 0), max(rss)
    warm, end = warm_window(rss)
    growth_kb = (rss[end] - rss[warm]) * 1024 / max(1, end - warm)
    mb = f"{TARGET_MEMORY_MB:.0f} MB"
    cold = percentile(report.cold_start_s, 50)
    rows: list[tuple[str, str, str, str]] = [
        (
            f"cold start to attract screen (median of {len(report.cold_start_s)})",
            f"{cold:.2f} s",
            f"{TARGET_COLD_START_S:.0f} s",
            _verdict(cold, TARGET_COLD_START_S),
        ),
        ("memory on the attract screen, no session yet", f"{base:.1f} MB", mb, _verdict(base, TARGET_MEMORY_MB)),
        (
            f"memory after {first} session(s) (RSS)",
            f"{rss[first]:.1f} MB",
            mb,
            _verdict(rss[first], TARGET_MEMORY_MB),
        ),
        (f"memory after {last} sessions (RSS)", f"{rss[last]:.1f} MB", mb, _verdict(rss[last], TARGET_MEMORY_MB)),
        (
            "peak memory over the run (VmHWM)",
            f"{report.peak_mb:.1f} MB",
            mb,
            _verdict(report.peak_mb, TARGET_MEMORY_MB),
        ),
        (
            f"growth per session ({warm} -> {end})",
            f"{growth_kb:.1f} KB",
            f"<= {TARGET_GROWTH_KB:.0f} KB (flat)",
            "ok" if growth_kb <= TARGET_GROWTH_KB else "OVER",
        ),
    ]
    if report.ecps_rss_mb:
        n = max(report.ecps_rss_mb)
        value = report.ecps_rss_mb[n]
        rows.insert(
            4,
            (
                f"memory after {n} sessions, e-CPS login configured (RSS)",
                f"{value:.1f} MB",
                mb,
                _verdict(value, TARGET_MEMORY_MB),
            ),
        )
    half = max((k for k in rss if k <= last // 2), default=warm)
    if warm < half < last:  # a slow settling and a leak differ here: a leak keeps its slope
        half_kb = (rss[last] - rss[half]) * 1024 / (last - half)
        rows.append(
            (
                f"growth per session, second half ({half} -> {last})",
                f"{half_kb:.1f} KB",
                f"<= {TARGET_GROWTH_KB:.0f} KB (flat)",
                "ok" if half_kb <= TARGET_GROWTH_KB else "OVER",
            )
        )
    for kind, label in SCAN_KINDS:
        values = report.scans_ms.get(kind, [])
        if not values:
            continue
        for q in (50, 99):
            value = percentile(values, q)
            rows.append(
                (
                    f"scan-to-screen, {label}, p{q}",
                    f"{value:.1f} ms",
                    f"{TARGET_SCAN_MS:.0f} ms",
                    _verdict(value, TARGET_SCAN_MS),
                )
            )
    samples = "+".join(str(len(report.scans_ms.get(k, []))) for k in ("box", "box-refused", "unreadable"))
    lines = [
        f"kiosk benchmark: {args.display} offscreen (Mesa llvmpipe), sandbox in its own process on 127.0.0.1, "
        "the kiosk as the box composes it (ui.production, PIN login) with a box's packages only "
        "(development-only ones refused), "
        f"{report.sessions} sessions, {samples} scan samples, {len(report.cold_start_s)} cold start(s) "
        f"({report.seconds:.1f} s; load average {report.load[0]:.1f} -> {report.load[1]:.1f} on {os.cpu_count()} CPUs)",
        *_table(rows),
        "RSS by session: " + ", ".join(f"{k}: {v:.0f} MB" for k, v in sorted(rss.items())),
        f"peer: a bare Kivy app (one label) in the same offscreen window: {report.bare_mb:.0f} MB; the kiosk above "
        f"it: {base - report.bare_mb:.0f} MB on the attract screen, {rss[last] - report.bare_mb:.0f} MB after "
        f"{last} sessions",
        f"of the kiosk's RSS, {report.renderer_mb:.0f} MB are the software renderer's libraries (libLLVM, "
        f"swrast_dri), {report.renderer_dirty_mb:.0f} MB of them dirty: the rest is their code, clean pages",
        "dirty pages (what the kernel cannot take back; the rest of the RSS is clean file pages): "
        + ", ".join(f"{k}: {v:.0f} MB" for k, v in sorted(report.dirty_mb.items()))
        + f"; the bare Kivy app: {report.bare_dirty_mb:.0f} MB",
    ]
    if inside := report.inprocess_rss_mb:
        lines.append(
            f"sandbox's share when it runs inside the kiosk's process (as the issue measured; {max(inside)} "
            f"sessions): {_beside(inside, rss, 0)}; the sandbox's own process: {report.sandbox_mb:.0f} MB"
        )
    if with_ecps := report.ecps_rss_mb:
        lines.append(
            f"a box with the e-CPS login configured ([psc]: authlib and joserfc loaded; {max(with_ecps)} "
            f"sessions): {_beside(with_ecps, rss, 1)}"
        )
    foreign = ", ".join(report.foreign_modules[:8]) or "none"
    lines.append(f"sandbox, bench and e-CPS client modules in the kiosk's process: {foreign}")
    lines.append("where a scan's time goes (ms, p50 / p99): Counter.handle on the worker [of which the session's")
    lines.append("  copy for roll-back], view model + kv on the UI thread; the rest is hand-off, layout and the frame")
    for kind, label in SCAN_KINDS:
        parts = report.split_ms.get(kind)
        if not parts or not parts["handle"]:
            continue
        total = report.scans_ms[kind]
        cells = [
            f"{name} {percentile(parts[key], 50):.1f} / {percentile(parts[key], 99):.1f}"
            for name, key in (("handle", "handle"), ("copy", "copy"), ("apply", "apply"))
        ]
        lines.append(f"  {label}: total {percentile(total, 50):.1f} / {percentile(total, 99):.1f}; " + ", ".join(cells))
    collections = [
        f"{kind} {len(values)}, p50 {percentile(values, 50):.1f} ms, longest {max(values):.1f} ms"
        for kind, values in report.gc_ms.items()
        if values
    ]
    if collections:
        lines.append("full collections (generation 2: every thread waits): " + "; ".join(collections))
    if report.refused:
        lines.append(f"refused during the sessions: {report.refused[:5]}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 sessions, 10 samples, 1 cold start")
    parser.add_argument("--soak", action="store_true", help=f"{SOAK_SESSIONS:,} sessions (memory flat over months)")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=200, help="scan samples of each kind")
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument(
        "--inprocess-sessions",
        type=int,
        default=10,
        help="sessions of the comparison run with the sandbox inside the kiosk's process (0: none)",
    )
    parser.add_argument(
        "--ecps-sessions",
        type=int,
        default=10,
        help="sessions of the run on a box with the e-CPS login configured ([psc]; 0: none)",
    )
    parser.add_argument("--display", default="800x480", choices=["800x480", "1280x800"])
    parser.add_argument("--child", choices=["coldstart", "run", "sandbox", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-url", help=argparse.SUPPRESS)
    parser.add_argument("--rx-ids", help=argparse.SUPPRESS)
    parser.add_argument("--refuse", default="", help=argparse.SUPPRESS)
    parser.add_argument("--box", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.samples, args.cold_starts = 3, 10, 1
        args.inprocess_sessions = min(args.inprocess_sessions, 1)
        args.ecps_sessions = min(args.ecps_sessions, 1)
    if args.soak:
        args.sessions = SOAK_SESSIONS
    args.inprocess_sessions = min(args.inprocess_sessions, args.sessions)
    args.ecps_sessions = min(args.ecps_sessions, args.sessions)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "sandbox":
        return sandbox_child(args)
    if args.child == "bare":
        return bare_child(args)
    if args.child:
        return child(args.child, args)
    report = run_benchmark(args)
    print(format_report(report, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
