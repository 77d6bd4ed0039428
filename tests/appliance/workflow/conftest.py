"""A real Counter on a real SQLite file, offline (degraded mode), with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
from appliance.scenario import EXPECTED_KINDS, START
from appliance.store import open_database
from appliance.store import operators as operators_module
from appliance.store.records import CounterRecords
from appliance.store.sealing import FieldCipher
from appliance.teleservices import TeleserviceUnavailable
from appliance.workflow.events import CardInserted, Event, Intent, Scanned
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step

PIN = "2468"
PRODUCTS = ("3400930000120", "3400930000649", "3400930001028")


@pytest.fixture(autouse=True)
def cheap_pin_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store tests' cheap PIN hashing: the same algorithm at its minimum cost."""
    cheap: operators_module.PinKdfParams
    if operators_module.argon2id_available():
        cheap = operators_module.Argon2idParams(memory_kib=8, iterations=1, lanes=1)
    else:
        cheap = operators_module.ScryptParams(log2_n=4, r=8, p=1)
    monkeypatch.setattr(operators_module, "PIN_KDF", cheap)


class Unreachable:
    """Teleservices behind a dead network: every call fails as a timeout would."""

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        def call(*_: Any, **__: Any) -> NoReturn:
            raise TeleserviceUnavailable(name)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Box:
    """One kiosk process on the counter's files: a restart is a new Box on the same paths."""

    db_path: Path
    key_path: Path
    clock: Clock

    def __post_init__(self) -> None:
        self.db = open_database(self.db_path)
        self.records = CounterRecords(self.db, FieldCipher.load(self.key_path), self.clock)
        self.counter = Counter(self.records, Unreachable(), ProductTable.load(DEFAULT_PRODUCTS_PATH), clock=self.clock)  # type: ignore[arg-type]
        self.reader = CodeReader()
        self.serials = 0
        self.sessions = 0

    def send(self, event: Event) -> Outcome:
        return self.counter.handle(event)

    def intent(self, name: str, **args: Any) -> Outcome:
        return self.send(Intent(name, args))

    def bill(self, case: str = "durand", boxes: int = 1) -> int:
        """A whole offline session for the card of ``case`` up to its claim (the payment screen)."""
        from sandbox.population import CASES, PEOPLE

        person = PEOPLE[CASES[case].members[0]]
        logged_in = self.counter.operator is None
        if logged_in:  # the professional acts of a session need someone at the panel
            self._ok(self.intent("login", operator="alice", pin=PIN))
        card = CardInserted((person.beneficiary,), {person.beneficiary.nir: person.amo}, START.date())
        self._ok(self.send(card))
        self.sessions += 1
        self._ok(self._scan(f"EP{self.sessions:04d}-{self.serials:04d}-CLMS-0001"))
        for cip13 in PRODUCTS[:boxes]:
            self._ok(self.intent("enter_line", label=f"CIP {cip13}", quantity=1, cip13=cip13))
        self._ok(self.intent("confirm_prescription"))
        for cip13 in PRODUCTS[:boxes]:
            self.serials += 1
            self._ok(self._scan(f"010{cip13}17271231" + f"10LOT\x1d21RC{self.serials:06d}"))
        self._ok(self.intent("continue"))
        outcome = self._ok(self.intent("validate", operator="alice", pin=PIN))
        assert outcome.step is Step.PAYMENT, outcome
        number = self.counter.session.claim_number
        assert number is not None
        if logged_in:
            self._ok(self.intent("logout"))
        return number

    def _scan(self, text: str) -> Outcome:
        code = self.reader.read(text.encode("latin-1"), expect=EXPECTED_KINDS.get(self.counter.step))
        return self.send(Scanned(code))

    @staticmethod
    def _ok(outcome: Outcome) -> Outcome:
        assert outcome.accepted, outcome
        return outcome

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def boot(tmp_path: Path, clock: Clock) -> Iterator[Callable[[], Box]]:
    """``boot()`` starts a kiosk process on the same files as the previous one (the first one creates
    them, with the pharmacist alice and the preparer bruno)."""
    key = tmp_path / "counter.key"
    FieldCipher.create_key(key)
    opened: list[Box] = []

    def start() -> Box:
        box = Box(tmp_path / "counter.db", key, clock)
        if not opened:
            operators_module.add_operator(box.db, "alice", Role.PHARMACIEN, PIN)
            operators_module.add_operator(box.db, "bruno", Role.PREPARATEUR, "1357")
        opened.append(box)
        return box

    yield start
    for box in opened:
        box.close()
