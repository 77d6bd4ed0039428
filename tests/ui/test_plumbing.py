"""Worker thread, controller (devices -> CodeReader -> core), watchdog socket and display settings."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.domain import Role
from ui.config import KioskConfig
from ui.controller import QUIET_KINDS, Result
from ui.watchdog import Watchdog, sd_notify, watchdog_interval
from ui.worker import CounterWorker


def test_worker_runs_jobs_in_order_off_the_calling_thread() -> None:
    posted: queue.Queue[Callable[[], None]] = queue.Queue()
    worker = CounterWorker(posted.put)
    worker.start()
    seen: list[tuple[int, str]] = []
    for n in range(5):
        worker.submit(lambda n=n: (n, threading.current_thread().name), seen.append)
    worker.submit(lambda: 1 / 0, seen.append, lambda error: seen.append((-1, type(error).__name__)))
    for _ in range(6):
        posted.get(timeout=5)()
    assert seen == [*[(n, "counter-worker") for n in range(5)], (-1, "ZeroDivisionError")]
    assert worker.call(threading.current_thread) is not threading.current_thread()
    worker.stop()


class Listener:
    def __init__(self) -> None:
        self.results: list[Result] = []

    def began(self, kind: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        if result.kind not in QUIET_KINDS:  # the kiosk's own start-up check is not the test's
            self.results.append(result)

    def crashed(self, kind: str, error: BaseException) -> None:
        raise AssertionError(error)


def test_scans_go_through_the_code_reader_to_the_core(tmp_path: Path) -> None:
    """The simulated scanner delivers ScanEvents where a driver would; no window needed."""
    from ui.kiosk import DEMO_OPERATORS, kiosk_against_sandbox

    posted: queue.Queue[Callable[[], None]] = queue.Queue()
    listener = Listener()
    with kiosk_against_sandbox(KioskConfig(), posted.put, db_path=tmp_path / "c.db") as kiosk:
        kiosk.controller.listener = listener
        kiosk.devices.scan(b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE")
        kiosk.devices.scan(b"EP7K2Q-9XWM-4TDA-LR8C")
        kiosk.devices.scan(b"0103400930000121172705311\x1d21X")
        while len(listener.results) < 3:
            posted.get(timeout=10)()
        first, second, third = listener.results
        assert (first.kind, first.outcome.accepted, first.view["step"]) == ("scan", True, "rights")
        assert first.view["patient"]["birth_name"] == "DURAND"
        assert "nir" not in repr(first.view).lower() and first.injected_at > 0
        assert second.view["step"] == "prescription" and second.view["lines"] == 2
        assert third.outcome.accepted is False
        assert str(third.outcome.message).startswith("Code illisible, réessayez")
        assert kiosk.vm.operators == ["alice", "bruno"]
        assert ("alice", Role.PHARMACIEN, "2468") in DEMO_OPERATORS


def test_sd_notify_reaches_a_real_unix_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        watchdog = Watchdog(str(path))
        assert watchdog.ready() and watchdog.ping()
        assert [server.recv(64), server.recv(64)] == [b"READY=1", b"WATCHDOG=1"]
        assert watchdog.sent == 1


def test_sd_notify_abstract_namespace() -> None:
    name = f"comptoir-test-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert sd_notify("WATCHDOG=1", "@" + name)
        assert server.recv(64) == b"WATCHDOG=1"


def test_sd_notify_never_blocks_when_nobody_reads(tmp_path: Path) -> None:
    path = tmp_path / "full"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        results = [sd_notify("WATCHDOG=1", str(path)) for _ in range(2000)]
    assert results[0] is True and results[-1] is False  # the queue filled up: pings dropped, UI not frozen


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("WATCHDOG=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert watchdog_interval() == 10.0


@pytest.mark.parametrize(
    ("config", "touch", "window"),
    [
        (KioskConfig.preset("800x480"), 79, (800, 480)),
        (KioskConfig.preset("1280x800"), 88, (1280, 800)),
        (KioskConfig.preset("800x480").with_options(orientation="portrait"), 79, (480, 800)),
        (KioskConfig(dpi=152.4), 90, (800, 480)),
    ],
)
def test_touch_targets_are_15_mm_at_the_panel_density(config: KioskConfig, touch: int, window: Any) -> None:
    assert config.touch_px == touch
    assert config.window_size == window
    assert config.unit_px >= config.touch_px


def test_kiosk_settings_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[kiosk]\nwidth = 1280\nheight = 800\ndiagonal_in = 10.1\norientation = "portrait"\n')
    config = KioskConfig.from_toml(path)
    assert config.window_size == (800, 1280) and config.touch_px == 88
    path.write_text("[kiosk]\nwidht = 1280\n")
    with pytest.raises(ValueError, match="widht"):
        KioskConfig.from_toml(path)
