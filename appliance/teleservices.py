"""The teleservice port: what the counter asks the national services, whatever carries the request.

The sync adapter implements it over HTTPS (mutual TLS in the field, the sandbox in development).
Every call may fail in two ways the workflow treats differently: the service could not be reached
(degraded mode, complete later) or it answered with a refusal (tell the pharmacist why).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from appliance.domain import AmcRights, AmoRights, ApcvContext, Beneficiary, DpEntry, InsiResult, Prescription, Traits


class TeleserviceError(Exception):
    """Base of teleservice failures."""


class TeleserviceUnavailable(TeleserviceError):
    """No usable answer (network down, timeout, 5xx): carry on offline and complete the call later."""


class TeleserviceRefused(TeleserviceError):
    """The service answered and said no; the message is for the pharmacist (in French)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Teleservices(Protocol):
    """Interactive calls (answer needed now, short timeout) and delivery calls (from the outbox)."""

    def apcv_context(self, token: bytes) -> ApcvContext: ...

    def insi_search_card(self, beneficiary: Beneficiary) -> InsiResult: ...

    def insi_search_traits(self, traits: Traits) -> InsiResult: ...

    def adri(self, beneficiary: Beneficiary, day: date) -> AmoRights: ...

    def idb(self, amc_number: str, member_number: str, nir: str, day: date) -> AmcRights: ...

    def dld(self, amc_number: str, member_number: str, nir: str, day: date) -> AmcRights: ...

    def fetch_prescription(self, prescription_id: str) -> Prescription: ...

    def dp_consult(self, beneficiary: Beneficiary, since: date) -> list[DpEntry]:
        """The dispensations of the patient's Dossier Pharmaceutique since ``since`` (the DP is opened
        and read with the carte Vitale's NIR); asked only after the patient's consent was recorded."""
        ...

    def deliver(self, stream: str, key: str, payload: dict[str, Any], *, attempts: int | None = None) -> dict[str, Any]:
        """Send one outbox message (execution data, claim batch, DMP document); idempotent by ``key``.

        ``attempts`` bounds the adapter's own retries: 1 when called from the counter, which must not wait.
        """
        ...
