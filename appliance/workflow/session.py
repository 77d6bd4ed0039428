"""The state of one counter session, and the snapshot the kiosk and the scenario transcript show."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from appliance.billing import Bill
from appliance.domain import (
    AmcRights,
    AmoRights,
    Beneficiary,
    DpEntry,
    IdentityStatus,
    Ins,
    Prescription,
    PrescriptionLine,
)


class Step(StrEnum):
    ATTRACT = "attract"
    CHOOSE_BENEFICIARY = "choose-beneficiary"
    IDENTITY = "identity"
    RIGHTS = "rights"
    PRESCRIPTION = "prescription"
    DISPENSATION = "dispensation"
    CONTROL = "control"
    PAYMENT = "payment"


@dataclass
class DispensedBox:
    cip13: str
    gtin: str
    serial: str | None
    lot: str | None
    expiry: str | None
    line_no: int | None
    """The prescription line it fills; None until the pharmacist assigns a box that matches none."""
    substitution: bool = False


@dataclass
class Session:
    """Everything known about the patient in front of the counter; cleared when they leave."""

    identify_source: str | None = None
    """apcv, card, ins-datamatrix or search."""
    beneficiaries: tuple[Beneficiary, ...] = ()
    card_amo: dict[str, AmoRights] = field(default_factory=dict)
    card_data_stale: bool = True
    beneficiary: Beneficiary | None = None
    apcv_ins: dict[str, Ins] = field(default_factory=dict)
    patient_id: int | None = None
    ins: Ins | None = None
    ins_status: IdentityStatus | None = None
    identity_choices: tuple[Ins, ...] = ()
    traits_to_confirm: dict[str, tuple[str, str]] = field(default_factory=dict)
    qualification_prompt: bool = False
    identity_doubtful: bool = False
    """A document contradicted the INS traits (now or at an earlier visit): never qualified."""
    insi_pending: bool = False
    amo: AmoRights | None = None
    amo_source: str | None = None
    amc: AmcRights | None = None
    amc_source: str | None = None
    pending_prescription_id: str | None = None
    prescription: Prescription | None = None
    prescription_confirmed: bool = False
    prescription_mismatch: list[str] = field(default_factory=list)
    """Traits (``birth_name``, ``first_names``, ``birth_date``) by which the prescription's patient
    differs from the identified one; confirming needs the pharmacist's decision first."""
    prescription_patient_accepted: bool = False
    dp_consent: bool | None = None
    """The patient's answer about their Dossier Pharmaceutique (None: not asked yet)."""
    dp_history: list[DpEntry] | None = None
    """What the DP listed when the pharmacist consulted it (None: not consulted); panel only."""
    prescription_degraded: bool = False
    entered_lines: list[PrescriptionLine] = field(default_factory=list)
    renewal: int = 0
    dispensed_renewals: set[int] = field(default_factory=set)
    boxes: list[DispensedBox] = field(default_factory=list)
    annotation: str = ""
    validated_by: int | None = None
    bill: Bill | None = None
    claim_number: int | None = None
    receipt: list[str] = field(default_factory=list)

    def lines(self) -> tuple[PrescriptionLine, ...]:
        if self.prescription is not None:
            return self.prescription.lines
        return tuple(self.entered_lines)

    def discrepancies(self) -> list[dict[str, Any]]:
        """Differences between what was prescribed and what is about to be handed out."""
        found: list[dict[str, Any]] = []
        for line in self.lines():
            boxes = [b for b in self.boxes if b.line_no == line.line_no]
            if len(boxes) != line.quantity:
                found.append(
                    {
                        "line": line.line_no,
                        "kind": "quantity",
                        "prescribed": line.quantity,
                        "dispensed": len(boxes),
                    }
                )
            for box in boxes:
                if box.substitution:
                    found.append(
                        {
                            "line": line.line_no,
                            "kind": "substitution",
                            "prescribed": line.cip13,
                            "dispensed": box.cip13,
                        }
                    )
        for box in self.boxes:
            if box.line_no is None:
                found.append({"line": None, "kind": "unassigned-box", "dispensed": box.cip13})
        return found
