"""`comptoir kiosk`: the production composition root, real devices feeding the controller the demo uses.

:mod:`ui.kiosk` wires the kiosk to the sandbox with simulated devices; this module wires the very same
:class:`~ui.controller.KioskController` and :class:`~ui.viewmodel.KioskViewModel` to what is on the box:
the SQLite store and its field key, the national teleservices over HTTPS (:class:`HttpTeleservices`),
the scanners named in the configuration (keyboard wedges over evdev, serial ports, the camera) and the
smart-card reader (:class:`ReaderSupervisor` + :class:`CardStation`). Scans go to
:meth:`KioskController.scan`, carte Vitale events to ``card_inserted``/``card_removed``, CPS events to
the view model (PIN pad, lock), exactly the paths :class:`ui.simulated.SimulatedDevices` takes.

Everything comes from one TOML file (``systemd/kiosk.toml.example`` documents every key); a wrong file
stops the command with one precise line naming the file, the table and the key, before any window
opens, so systemd's journal says what to fix. Drivers are imported only when configured: a box
without a camera never loads zxing or numpy for it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.cards import CardProblem, CpsAuthenticator, CpsInserted, CpsRemoved
from appliance.codes.reader import CodeReader
from appliance.workflow.events import CardInserted, CardRemoved
from appliance.workflow.machine import CounterSettings
from ui.config import KioskConfig
from ui.controller import KioskController
from ui.worker import CounterWorker, Post

if TYPE_CHECKING:  # Kivy (through the view model) is loaded by the kiosk command only, never by `comptoir --help`
    import argparse

    from drivers.camera import CameraScannerConfig
    from drivers.keyboard_wedge import KeyboardWedgeConfig
    from drivers.serial_scanner import SerialScannerConfig
    from drivers.worker import DriverThread
    from sync.insi_soap import InsiSettings
    from sync.psc import PscSettings
    from ui.viewmodel import KioskViewModel

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/comptoir/kiosk.toml")
"""Where ``comptoir kiosk`` looks without ``--config`` (or ``$COMPTOIR_KIOSK_CONFIG``)."""


class KioskConfigError(ValueError):
    """The configuration file cannot be used; the message names the file, table and key."""


@dataclass(frozen=True)
class CameraSettings:
    """The camera scanner: which V4L2 camera (Kivy's index), its resolution, and the scanner's options."""

    index: int = 0
    resolution: tuple[int, int] = (640, 480)
    flip_vertical: bool = False
    scanner: CameraScannerConfig | None = None


@dataclass(frozen=True)
class ProductionConfig:
    """What ``comptoir kiosk`` runs on. Paths are the box's; nothing here is a secret (the TLS key and
    the field key stay in their files, only their paths are configured)."""

    database: Path
    key: Path
    teleservices_url: str
    products: Path | None = None
    """The product table (CSV); None: the one shipped with the release."""
    tls_ca: Path | None = None
    """CA bundle that signs the teleservices' certificate; None: the system's trust store."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """Client certificate and key of the box (mutual TLS), both or neither."""
    timeout_s: float = 2.0
    insi: InsiSettings | None = None
    """``[teleservices.insi]``: the INSi endpoint and context values; None: the sandbox's defaults."""
    keyboard_wedges: tuple[KeyboardWedgeConfig, ...] = ()
    serial_ports: tuple[SerialScannerConfig, ...] = ()
    camera: CameraSettings | None = None
    cards: bool = True
    """Start the PC/SC reader supervisor (carte Vitale and CPS)."""
    backoffice_events: bool = False
    """Queue claim and batch events for the back office (the box is enrolled in a fleet, `comptoir sync` runs)."""
    kiosk: KioskConfig = field(default_factory=KioskConfig)
    counter: CounterSettings = field(default_factory=CounterSettings)
    """The workflow's own settings: qualification visits, patient idle timeout, operator login idle time."""
    psc: PscSettings | None = None
    """``[psc]``: Pro Santé Connect, for the panel's e-CPS login (CIBA); None: PIN and CPS only."""


# ---------------------------------------------------------------------------------------------------------
# The configuration file
# ---------------------------------------------------------------------------------------------------------

_TOP = {"store", "teleservices", "scanners", "cards", "kiosk", "counter", "psc"}


def load_config(path: Path, env: Mapping[str, str] | None = None) -> ProductionConfig:
    """Read and check the whole file. ``[store]`` paths default to ``$COMPTOIR_DB`` / ``$COMPTOIR_KEY``
    (the systemd unit sets them), so the unit and the file cannot disagree silently: the file wins."""
    env = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KioskConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise KioskConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return _parse(data, env)
    except KioskConfigError as exc:
        raise KioskConfigError(f"{path}: {exc}") from None


def _table(data: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise KioskConfigError(f"[{where}{name}] must be a table")
    return dict(value)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise KioskConfigError(f"[{where}] unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _path(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> Path | None:
    value = table.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise KioskConfigError(f"[{where}] {key} must be a non-empty path string")
    return Path(value)


def _parse(data: Mapping[str, Any], env: Mapping[str, str]) -> ProductionConfig:
    _no_unknown(data, _TOP, "top level")
    store = _table(data, "store")
    _no_unknown(store, {"database", "key", "products", "backoffice_events"}, "store")
    database = _path(store, "database", "store", env.get("COMPTOIR_DB"))
    if database is None:
        raise KioskConfigError("[store] database is required (or $COMPTOIR_DB)")
    key = _path(store, "key", "store", env.get("COMPTOIR_KEY")) or database.with_name(database.name + ".key")

    tele = _table(data, "teleservices")
    _no_unknown(tele, {"base_url", "ca", "cert", "key", "timeout_s", "insi"}, "teleservices")
    url = tele.get("base_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise KioskConfigError("[teleservices] base_url is required, an https:// URL")
    cert, tls_key = _path(tele, "cert", "teleservices"), _path(tele, "key", "teleservices")
    if (cert is None) != (tls_key is None):
        raise KioskConfigError("[teleservices] cert and key go together (client certificate and its key)")
    timeout = tele.get("timeout_s", 2.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise KioskConfigError("[teleservices] timeout_s must be a positive number of seconds")
    insi = None
    if "insi" in tele:
        from sync.insi_soap import InsiSettingsError, settings_from_table

        try:
            insi = settings_from_table(_table(tele, "insi", "teleservices."))
        except InsiSettingsError as exc:
            raise KioskConfigError(str(exc)) from None

    cards = _table(data, "cards")
    _no_unknown(cards, {"enabled"}, "cards")
    enabled = cards.get("enabled", True)
    if not isinstance(enabled, bool):
        raise KioskConfigError("[cards] enabled must be true or false")

    try:
        kiosk = KioskConfig().with_options(**_table(data, "kiosk"))
    except (TypeError, ValueError) as exc:
        raise KioskConfigError(f"[kiosk] {exc}") from None

    counter: CounterSettings = _build(CounterSettings, _table(data, "counter"), "counter")

    psc = None
    if "psc" in data:
        from sync.psc import PscSettingsError
        from sync.psc import settings_from_table as psc_settings

        try:
            psc = psc_settings(_table(data, "psc"))
        except PscSettingsError as exc:
            raise KioskConfigError(str(exc)) from None

    scanners = _table(data, "scanners")
    _no_unknown(scanners, {"keyboard_wedge", "serial", "camera"}, "scanners")
    return ProductionConfig(
        database=database,
        key=key,
        products=_path(store, "products", "store"),
        backoffice_events=bool(store.get("backoffice_events", False)),
        teleservices_url=url,
        tls_ca=_path(tele, "ca", "teleservices"),
        tls_cert=cert,
        tls_key=tls_key,
        timeout_s=float(timeout),
        insi=insi,
        keyboard_wedges=tuple(_wedge(t, i) for i, t in enumerate(_array(scanners, "keyboard_wedge"))),
        serial_ports=tuple(_serial(t, i) for i, t in enumerate(_array(scanners, "serial"))),
        camera=_camera(_table(scanners, "camera", "scanners.")) if "camera" in scanners else None,
        cards=enabled,
        kiosk=kiosk,
        counter=counter,
        psc=psc,
    )


def _array(scanners: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = scanners.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise KioskConfigError(f"[[scanners.{name}]] must be an array of tables")
    return [dict(t) for t in value]


def _build(cls: Any, table: dict[str, Any], where: str) -> Any:
    """A driver's config dataclass from its table: unknown keys and bad values named, not a traceback."""
    known = {f.name for f in fields(cls)}
    _no_unknown(table, known, where)
    missing = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in table
    ]
    if missing:
        raise KioskConfigError(f"[{where}] missing key(s): {', '.join(missing)}")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise KioskConfigError(f"[{where}] {exc}") from None


def _wedge(table: dict[str, Any], index: int) -> KeyboardWedgeConfig:
    from drivers.keyboard_wedge import DeviceMatch, KeyboardWedgeConfig

    where = f"scanners.keyboard_wedge #{index + 1}"
    match = table.pop("match", None)
    if not isinstance(match, dict):
        raise KioskConfigError(f"[{where}] match is required: a table with by_id, name, phys, uniq, vendor or product")
    table["match"] = _build(DeviceMatch, dict(match), f"{where} match")
    if "terminators" in table:
        if not isinstance(table["terminators"], list):
            raise KioskConfigError(f"[{where}] terminators must be a list of xkb keysym names")
        table["terminators"] = frozenset(table["terminators"])
    config: KeyboardWedgeConfig = _build(KeyboardWedgeConfig, table, where)
    return config


def _serial(table: dict[str, Any], index: int) -> SerialScannerConfig:
    from drivers.serial_scanner import SerialScannerConfig, Terminator

    where = f"scanners.serial #{index + 1}"
    if "terminator" in table:
        name = table["terminator"]
        if name not in Terminator.__members__:
            raise KioskConfigError(f"[{where}] terminator must be one of {', '.join(Terminator.__members__)}")
        table["terminator"] = Terminator[name]
    config: SerialScannerConfig = _build(SerialScannerConfig, table, where)
    return config


def _camera(table: dict[str, Any]) -> CameraSettings:
    from drivers.camera import CameraScannerConfig
    from drivers.imaging import Symbol

    where = "scanners.camera"
    own = {"index": 0, "resolution": [640, 480], "flip_vertical": False}
    values = {k: table.pop(k, v) for k, v in own.items()}
    resolution = values["resolution"]
    if not (isinstance(resolution, list) and len(resolution) == 2 and all(isinstance(x, int) for x in resolution)):
        raise KioskConfigError(f"[{where}] resolution must be [width, height]")
    if "symbols" in table:
        try:
            table["symbols"] = frozenset(Symbol(s) for s in table["symbols"])
        except (TypeError, ValueError):
            raise KioskConfigError(f"[{where}] symbols must be a list of: {', '.join(Symbol)}") from None
    return CameraSettings(
        index=int(values["index"]),
        resolution=(resolution[0], resolution[1]),
        flip_vertical=bool(values["flip_vertical"]),
        scanner=_build(CameraScannerConfig, table, where),
    )


# ---------------------------------------------------------------------------------------------------------
# The composition
# ---------------------------------------------------------------------------------------------------------


class DeviceStatus:
    """The drivers' :class:`~appliance.ports.DeviceStatusSink`: a device lost or back is said on screen."""

    def __init__(self, vm: KioskViewModel, post: Post) -> None:
        self.vm, self.post = vm, post

    def device_lost(self, source: str, reason: str) -> None:
        log.warning("device %s lost: %s", source, reason)
        self.post(lambda: self.vm.warn(f"Appareil déconnecté ({source}) : appelez le pharmacien"))

    def device_found(self, source: str) -> None:
        log.info("device %s found", source)


def station_sink(
    controller: KioskController, vm: KioskViewModel, post: Post, authenticator: CpsAuthenticator
) -> Callable[[object], None]:
    """Where the :class:`CardStation` delivers (from the supervisor's thread, never blocking): a carte
    Vitale goes to the core like a simulated one; a CPS to the view model, whose PIN pad hands the PIN to
    the card (``verify_pin`` on the controller's worker) before ``cps_login`` reaches the core."""

    def sink(event: object) -> None:
        match event:
            case CardInserted():
                controller.card_inserted(event)
            case CardRemoved():
                controller.card_removed()
            case CpsInserted(reader=reader, holder=holder, pin=pin):

                def verify(code: str) -> None:
                    controller.cps_login(lambda: authenticator.verify_pin(reader, code))

                def show() -> None:
                    vm.verify_cps = verify
                    vm.cps_inserted(holder.display_name, pin.tries_left, pin.blocked)

                post(show)
            case CpsRemoved():
                post(vm.cps_removed)
            case CardProblem(message=message):
                post(lambda: vm.warn(message))
            case _:
                log.warning("card station event ignored: %r", event)

    return sink


@dataclass
class Production:
    """The running kiosk: its controller and view model, the drivers to start, and how to close it all."""

    controller: KioskController
    vm: KioskViewModel
    drivers: list[DriverThread]
    _close_store: Callable[[], None]
    camera_frames: Any = None
    """The camera's frame source, opened and closed on the Kivy main thread."""
    _close_psc: Callable[[], None] | None = None
    """Ends an e-CPS wait in progress and closes the Pro Santé Connect client."""
    _closed: bool = False

    def start_devices(self) -> None:
        """Start every driver (each opens, and reopens, its device in its own thread)."""
        if self.camera_frames is not None:
            self.camera_frames.open()
        for driver in self.drivers:
            driver.start()

    def close(self) -> None:
        """Stop every driver, then the worker, then the store; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.camera_frames is not None:
            self.camera_frames.close()
        if self._close_psc is not None:
            self._close_psc()
        for driver in self.drivers:
            try:
                driver.stop()
            except Exception:
                log.exception("stopping %s", driver.source)
        try:
            self.controller.worker.call(self._close_store)
        finally:
            self.controller.stop()


def build_production(config: ProductionConfig, post: Post, *, clock: Callable[[], float] = time.time) -> Production:
    """The whole kiosk, devices built but not started (no thread reads a device before ``start_devices``).

    The store is opened on the controller's worker thread, the one every core call runs on (SQLite
    connections belong to their thread). ``clock`` is the box's wall clock; the kiosk benchmark runs this
    very composition on a clock started on the sandbox population's reference day.
    """
    from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
    from appliance.store import operators
    from appliance.store.database import open_database
    from appliance.store.records import CounterRecords
    from appliance.store.sealing import FieldCipher
    from appliance.workflow.machine import Counter
    from sync.teleservices_http import HttpTeleservices
    from ui.viewmodel import KioskViewModel

    worker = CounterWorker(post)
    worker.start()

    def open_core() -> tuple[Counter, Any, list[str], dict[str, str]]:
        if not config.key.exists():
            raise KioskConfigError(f"field key {config.key} is missing (created at installation, never here)")
        cipher = FieldCipher.load(config.key)
        db = open_database(config.database)
        teleservices = HttpTeleservices(
            config.teleservices_url,
            timeout=config.timeout_s,
            verify=str(config.tls_ca) if config.tls_ca else True,
            cert=(str(config.tls_cert), str(config.tls_key)) if config.tls_cert and config.tls_key else None,
            insi=config.insi,
        )
        records = CounterRecords(db, cipher, clock, backoffice_events=config.backoffice_events)
        products = ProductTable.load(config.products or DEFAULT_PRODUCTS_PATH)
        counter = Counter(records, teleservices, products, clock=clock, settings=config.counter)
        return counter, db, [op.name for op in operators.list_operators(db)], operators.rpps_by_name(db)

    try:
        counter, db, names, rpps_of = worker.call(open_core)
    except BaseException:
        worker.stop()
        raise
    controller = KioskController(counter, CodeReader(), post, worker=worker)
    kc = config.kiosk
    vm = KioskViewModel(
        controller,
        thanks_s=kc.thanks_s,
        banner_s=kc.banner_s,
        waiting_after_s=kc.waiting_after_s,
        expected_call_s=kc.expected_call_s,
        panel_lock_s=kc.panel_lock_s,
    )
    controller.listener = vm
    vm.set_operators(names)
    vm.set_operator_rpps(rpps_of)
    vm.products = [(p.name, p.cip13) for p in counter.products][:8]
    close_psc = _wire_ecps(config, controller, vm, post)
    controller.started()  # a bill cut off by the last stop opens the pharmacist's panel
    status = DeviceStatus(vm, post)
    drivers: list[DriverThread] = []
    frames = None
    for wedge in config.keyboard_wedges:
        from drivers.keyboard_wedge import KeyboardWedgeScanner

        drivers.append(KeyboardWedgeScanner(wedge, controller.scan, status=status))
    for port in config.serial_ports:
        from drivers.serial_scanner import SerialScanner

        drivers.append(SerialScanner(port, controller.scan, status))
    if config.camera is not None:
        from drivers.camera import CameraScanner, CameraScannerConfig, KivyCameraFrames

        frames = KivyCameraFrames(
            config.camera.index, config.camera.resolution, flip_vertical=config.camera.flip_vertical
        )
        drivers.append(CameraScanner(config.camera.scanner or CameraScannerConfig(), frames, controller.scan, status))
    if config.cards:
        from drivers.cards import CardStation, PcscCpsAuthenticator, PcscVitaleReader, ReaderSupervisor

        authenticator = PcscCpsAuthenticator()
        station = CardStation(station_sink(controller, vm, post, authenticator), PcscVitaleReader(), authenticator)
        drivers.append(ReaderSupervisor(station, status))
    return Production(controller, vm, drivers, db.close, frames, close_psc)


def _wire_ecps(
    config: ProductionConfig, controller: KioskController, vm: KioskViewModel, post: Post
) -> Callable[[], None] | None:
    """The panel's e-CPS login when ``[psc]`` is configured: the CIBA wait on a job of its own, and
    ``psc_login`` sent to the core only with the RPPS of a verified ID token. Nothing connects yet."""
    if config.psc is None:
        return None
    from sync.psc import PscClient
    from ui.ecps import EcpsLogin

    client = PscClient(config.psc)
    ecps = EcpsLogin(client, controller.psc_login, post)
    vm.ecps, vm.ecps_ready = ecps, True

    def close() -> None:
        ecps.stop()
        client.close()

    return close


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------


def cmd_kiosk(args: argparse.Namespace) -> int:
    """Load the file, build everything, run the fullscreen app; every driver is stopped on the way out."""
    path = args.config or Path(os.environ.get("COMPTOIR_KIOSK_CONFIG", DEFAULT_CONFIG))
    try:
        config = load_config(path)
    except KioskConfigError as exc:
        print(f"comptoir kiosk: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from ui.app import configure_kivy

    configure_kivy(config.kiosk)
    from ui.app import build_app, kivy_post
    from ui.watchdog import Watchdog

    try:
        production = build_production(config, kivy_post)
    except KioskConfigError as exc:
        print(f"comptoir kiosk: {exc}", file=sys.stderr)
        return 2
    watchdog = Watchdog() if os.environ.get("NOTIFY_SOCKET") else None
    try:
        app = build_app(
            production.vm,
            config.kiosk,
            tick=production.controller.tick,
            on_ready=lambda _app: production.start_devices(),
            watchdog=watchdog,
            on_stop=production.close,
        )
        app.run()
    finally:
        production.close()
    return 0


def register(commands: Any) -> None:
    """``comptoir kiosk [--config FILE]``."""
    kiosk = commands.add_parser("kiosk", help="the counter kiosk on this box's devices (fullscreen)")
    kiosk.add_argument(
        "--config",
        type=Path,
        help=f"TOML file (default: $COMPTOIR_KIOSK_CONFIG or {DEFAULT_CONFIG}; keys in systemd/kiosk.toml.example)",
    )
    kiosk.set_defaults(func=cmd_kiosk)
