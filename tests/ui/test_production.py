"""`comptoir kiosk`: the configuration file, and the production composition without any device or window."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.cards import CardHolder, CpsInserted, CpsRemoved, PinState, WrongPin
from appliance.domain import Role
from appliance.store import operators
from appliance.store.sealing import FieldCipher
from appliance.workflow import messages as msg
from ui.production import KioskConfigError, ProductionConfig, build_production, cmd_kiosk, load_config, station_sink

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "kiosk.toml.example"
MINIMAL = (
    '[store]\ndatabase = "{db}"\nkey = "{key}"\n'
    '[teleservices]\nbase_url = "http://127.0.0.1:9"\n[cards]\nenabled = false\n'
)
BASE = "[store]\ndatabase = 'x'\n[teleservices]\nbase_url = 'https://t'\n"


def test_the_sample_file_is_a_valid_configuration() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.database == Path("/var/lib/comptoir/data/comptoir.db")
    assert config.teleservices_url.startswith("https://") and config.cards
    (wedge,) = config.keyboard_wedges
    assert wedge.layout == "fr" and wedge.gs_substitute == "@" and wedge.match.by_id
    assert config.serial_ports == () and config.camera is None
    assert config.kiosk.fullscreen and config.kiosk.width == 800
    assert (config.counter.qualification_visits, config.counter.operator_idle_s) == (3, 300.0)


def test_the_counter_table_sets_the_workflows_visits_and_idle_times(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(BASE + "[counter]\nqualification_visits = 5\noperator_idle_s = 120\n", encoding="utf-8")
    counter = load_config(path, env={}).counter
    assert (counter.qualification_visits, counter.operator_idle_s, counter.idle_timeout_s) == (5, 120, 120.0)


def test_store_paths_default_to_the_units_environment(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[teleservices]\nbase_url = "https://t.example"\n', encoding="utf-8")
    config = load_config(path, env={"COMPTOIR_DB": "/data/c.db", "COMPTOIR_KEY": "/data/f.key"})
    assert (config.database, config.key) == (Path("/data/c.db"), Path("/data/f.key"))
    assert not config.backoffice_events


def test_an_enrolled_box_queues_back_office_events(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[store]\nbackoffice_events = true\n[teleservices]\nbase_url = "https://t.example"\n', encoding="utf-8"
    )
    assert load_config(path, env={"COMPTOIR_DB": "/data/c.db"}).backoffice_events


def test_scanner_tables_become_driver_settings(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[store]\ndatabase = "/d/c.db"\n[teleservices]\nbase_url = "https://t.example"\n'
        '[[scanners.serial]]\npath = "/dev/ttyACM0"\nterminator = "CRLF"\n'
        '[scanners.camera]\nindex = 1\nresolution = [1280, 720]\nsymbols = ["qr"]\n',
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert config.key == Path("/d/c.db.key")
    (serial,) = config.serial_ports
    assert serial.path == "/dev/ttyACM0" and serial.terminator.name == "CRLF"
    assert config.camera is not None and config.camera.resolution == (1280, 720) and config.camera.scanner
    assert {str(s) for s in config.camera.scanner.symbols} == {"qr"}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[store]\ndatabase = 'x'\n", "[teleservices] base_url is required"),
        ("[teleservices]\nbase_url = 'https://t'\n", "[store] database is required"),
        ("[store]\ndatabase = 'x'\ndatabse = 'y'\n[teleservices]\nbase_url = 'https://t'\n", "unknown key(s): databse"),
        (
            BASE + "cert = 'c.pem'\n",
            "cert and key go together",
        ),
        (BASE + "[kiosk]\nwidht = 3\n", "[kiosk] unknown"),
        (BASE + "[counter]\noperator_idle = 3\n", "[counter] unknown key(s): operator_idle"),
        (BASE + "[counter]\noperator_idle_s = 0\n", "[counter] operator_idle_s must be a positive number"),
        (BASE + "[counter]\nqualification_visits = 2.5\n", "[counter] qualification_visits must be a whole"),
        (
            BASE + "[[scanners.keyboard_wedge]]\nlayout = 'fr'\n",
            "[scanners.keyboard_wedge #1] match is required",
        ),
        (
            BASE + "[[scanners.serial]]\nbaudrate = 9600\n",
            "[scanners.serial #1] missing key(s): path",
        ),
        ("[store\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_the_table_and_key(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KioskConfigError) as refused:
        load_config(path, env={})
    assert str(refused.value).startswith(f"{path}: ") and said in str(refused.value)


def test_the_command_stops_before_any_window_on_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Args:
        config = tmp_path / "missing.toml"

    assert cmd_kiosk(Args()) == 2  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.startswith(f"comptoir kiosk: {Args.config}: cannot read")


class FakeCps:
    """The CpsAuthenticator port: accepts ``1234``, counts down otherwise (no PC/SC in the tests)."""

    def __init__(self, holder: CardHolder) -> None:
        self.holder_ = holder
        self.calls: list[tuple[str, str]] = []

    def holder(self, reader: str) -> CardHolder:
        return self.holder_

    def pin_state(self, reader: str) -> PinState:
        return PinState(3)

    def verify_pin(self, reader: str, pin: str) -> CardHolder:
        self.calls.append((reader, pin))
        if pin != "1234":
            raise WrongPin(2)
        return self.holder_


def _drain_until(posted: queue.Queue[Callable[[], None]], done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        posted.get(timeout=max(0.01, deadline - time.monotonic()))()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProductionConfig:
    monkeypatch.setattr(operators, "PIN_KDF", operators.ScryptParams(log2_n=4, r=8, p=1))
    key = tmp_path / "fields.key"
    FieldCipher.create_key(key)
    path = tmp_path / "kiosk.toml"
    path.write_text(MINIMAL.format(db=tmp_path / "c.db", key=key), encoding="utf-8")
    return load_config(path, env={})


def test_no_device_configured_gives_a_runnable_controller_and_the_cps_path(config: ProductionConfig) -> None:
    from appliance.store.database import open_database

    db = open_database(config.database, key_file=config.key)
    alice = operators.add_operator(db, "alice", Role.PHARMACIEN, "2468")
    operators.set_rpps(db, alice, "10000000007", by=None)
    db.close()
    posted: queue.Queue[Callable[[], None]] = queue.Queue()
    production = build_production(config, posted.put)
    try:
        controller, vm, counter = production.controller, production.vm, production.controller.counter
        assert production.drivers == [] and list(vm.operators) == ["alice"]
        _drain_until(posted, lambda: vm.results == 1)  # the start-up check: no bill cut off in a new file
        assert vm.last_result is not None and vm.last_result.kind == "started" and vm.recovery_text == ""
        production.start_devices()  # nothing to start: no device thread, no window
        cps = FakeCps(CardHolder("10000000007", "MARTIN", "Alice"))
        sink = station_sink(controller, vm, posted.put, cps)
        sink(CpsInserted("reader 0", cps.holder("reader 0"), PinState(3)))
        _drain_until(posted, lambda: vm.pin_for == "cps")
        seen = vm.results
        vm.pin.press("9")
        vm.submit_pin()
        _drain_until(posted, lambda: vm.results > seen)
        assert (
            not vm.unlocked
            and counter.operator_id is None
            and vm.message == "Code CPS incorrect (2 essai(s) restant(s))"
        )
        for digit in "1234":
            vm.pin.press(digit)
        vm.submit_pin()
        _drain_until(posted, lambda: vm.unlocked)
        assert counter.operator_id == alice and counter.cps_operator is not None and vm.cps_open
        assert cps.calls == [("reader 0", "9"), ("reader 0", "1234")]
        sink(CpsRemoved("reader 0"))
        _drain_until(
            posted, lambda: not vm.unlocked and vm.last_result is not None and vm.last_result.kind == "intent:logout"
        )
        assert counter.operator_id is None and counter.cps_operator is None
        seen = vm.results
        controller.intent("cps_login", rpps="10000000999")
        _drain_until(posted, lambda: vm.results > seen)
        assert vm.message == msg.CPS_UNKNOWN
    finally:
        production.close()
    production.close()  # twice is harmless


def test_a_missing_field_key_is_said_not_created(config: ProductionConfig) -> None:
    config.key.unlink()
    with pytest.raises(KioskConfigError, match="field key"):
        build_production(config, lambda callback: None)


def test_the_insi_table_points_the_box_at_the_real_service(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(
        BASE + "[teleservices.insi]\nendpoint = 'https://insi.example.fr/lps'\nemitter = '750000001'\nidam = 'AM-42'\n",
        encoding="utf-8",
    )
    insi = load_config(path, env={}).insi
    assert insi is not None and insi.url("https://t") == "https://insi.example.fr/lps"
    assert (insi.emitter, insi.idam) == ("750000001", "AM-42")
    assert load_config(EXAMPLE, env={}).insi is None  # the sandbox's defaults
    path.write_text(BASE + "[teleservices.insi]\nendpoint = 'https://insi.example.fr/lps'\n", encoding="utf-8")
    with pytest.raises(KioskConfigError, match=r"\[teleservices.insi\] an absolute endpoint .* set emitter and idam"):
        load_config(path, env={})


LEAN_KIOSK = """
import sys
from pathlib import Path
from appliance.store.sealing import FieldCipher
from ui.production import build_production, load_config

work = Path(sys.argv[1])
FieldCipher.create_key(work / "fields.key")
(work / "kiosk.toml").write_text(sys.argv[2], encoding="utf-8")
production = build_production(load_config(work / "kiosk.toml", env={}), lambda job: None)
production.close()
print(" ".join(sorted({name.partition(".")[0] for name in sys.modules} & {"numpy", "pandas", "zxingcpp"})))
"""


def test_a_box_without_a_camera_carries_neither_numpy_nor_zxing(tmp_path: Path) -> None:
    """numpy and zxing-cpp are the camera's (20 MB and more of the kiosk's memory): a box reading codes with
    a keyboard-wedge or serial scanner must not load them, not even through sqlite-utils' optional numpy."""
    import subprocess
    import sys

    toml = MINIMAL.format(db=tmp_path / "c.db", key=tmp_path / "fields.key")
    done = subprocess.run(
        [sys.executable, "-c", LEAN_KIOSK, str(tmp_path), toml], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


WINDOW = """
import json
import sys
from ui.app import configure_kivy
from ui.config import KioskConfig

configure_kivy(KioskConfig.preset("800x480").with_options(fullscreen=False))
from kivy.core.window import Window
from kivy.core.image import ImageLoader

print(json.dumps({"pillow": "PIL" in sys.modules, "loaders": [loader.__name__ for loader in ImageLoader.loaders]}))
"""


def test_the_kiosk_window_reads_images_with_sdl2_and_leaves_pillow_out(tmp_path: Path) -> None:
    """Kivy would load Pillow as one more image reader (2 MB of the kiosk's memory); SDL2_image reads PNG."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_HOME": str(tmp_path), "KIVY_NO_CONSOLELOG": "1"}
    done = subprocess.run([sys.executable, "-c", WINDOW], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["pillow"] is False
    assert "ImageLoaderSDL2" in seen["loaders"] and not any("Pil" in name for name in seen["loaders"])
