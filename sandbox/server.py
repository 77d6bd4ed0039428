"""The sandbox teleservices: a real HTTP server on 127.0.0.1 playing the national services.

JSON over plain HTTP (the real services are HTTPS with mutual TLS; the adapter is the same), except
INSi, which speaks the CNAM service's SOAP 1.2 (:mod:`sandbox.insi_soap`). Dates are ISO ``YYYY-MM-DD``.
Every JSON refusal is a 4xx with ``{"code": ..., "message": <French, for the pharmacist>}``; 5xx only
come from the fault switches. Nothing binds or starts before :meth:`SandboxServer.start` (or
:meth:`SandboxServer.serve_forever`).

Services (the name in brackets is the one used by request counters and fault switches)::

    POST /apcv/context                    [apcv]   {"token": base64 of the QR bytes}
         → {"beneficiaries": [Beneficiary], "ins": {nir: Ins}, "expires_at": epoch seconds}
           404 APCV_UNKNOWN, 410 APCV_EXPIRED
    POST /lps                             [insi]   SOAP 1.2, Content-Type application/soap+xml, wsa:Action
         urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale (RECVITALE: MatriculeOD, DateNaissance,
         RangNaissance) or ...:rechercherInsAvecTraitsIdentite (RECSANSVITALE: NomNaissance, Prenom, Sexe,
         DateNaissance, LieuNaissance?), with ContexteBAM, ContexteLPS and wsa:MessageID headers
         → RESULTAT: CodeCR 00 (INDIVIDU: INSACTIF, INSHISTO*, TIQ) | 01 | 02 (the candidates as INDIVIDU);
           a malformed request → SOAP Fault (HTTP 500, 415 for another media type); error_status faults
           answer a Receiver Fault (siram_40)
    POST /adri                            [adri]   {"nir", "holder_nir", "birth_date", "rank", "day"}
         → AmoRights; 404 ADRI_UNKNOWN
    POST /amc/idb                         [idb]    {"amc_number", "member_number", "nir", "day"}
    POST /amc/dld                         [dld]    same request
         → AmcRights with an "accreditation"; 404 AMC_UNKNOWN / AMC_NOT_COVERED,
           422 AMC_EXPIRED (IDB: "droits mutuelle expirés"), AMC_NOT_STARTED, AMC_TERMINATED (DLD)
    GET  /eprescription/prescriptions/{id} [eprescription] → Prescription; 404 EP_UNKNOWN
    POST /eprescription/executions        [execution]  Idempotency-Key
         step 1 {"step": 1, "prescription_id", "renewal", "dispensed_on"?, "lines": [...]}
         step 2 {"step": 2, "prescription_id", "renewal", "claim_number", "batch_number"?, ...billing}
         → {"status": "recorded" | "completed", "step", "execution_id", "prescription_id", "renewal"}
           404 EP_UNKNOWN, 409 ALREADY_DISPENSED ("ordonnance déjà délivrée": step 1 under another key),
           409 STEP1_MISSING, 409 ALREADY_COMPLETED, 409 BATCH_NOT_ACKNOWLEDGED, 422 RENEWAL_UNKNOWN
    POST /claims/batches                  [batch]  Idempotency-Key
         {"batch_number", "claims": [{"claim_number", "nir", "total_cents", "amo_cents", "amc_cents",
                                      "patient_cents", "amc_number"?, "amo_regime"?, "amo_fund"?,
                                      "lines"?: [{"amount_cents", ...}]}]}
         → ARL {"ack": "positive" | "negative", "ack_id", "batch_number", "claims", "received_on",
                "reason"?, "rejected_claims"?: [{"claim_number", "reason", "action"}]}
           (a negative ARL is a 200: the batch was received and answered; 409 BATCH_DUPLICATE when the
           batch number came before under another key)
    GET  /claims/remittances?since=YYYY-MM-DD  [remittance]
         → {"remittances": [{"remittance_id", "payer", "batch_number", "paid_on", "payment_reference",
                             "total_paid_cents", "claims": [{"claim_number", "status": "paid" | "rejected",
                                                             "paid_cents", "reason"?, "action"?}]}]}
    GET  /claims/remittances/noemie?since=YYYY-MM-DD  [remittance]
         → {"files": [{"name", "payer", "paid_on", "content"}]}: the same remittances as NOEMIE PS files
           (the published layout, one per payer and payment day; content: one character per byte)
    POST /dmp/repository                  [dmp]    IHE ITI-41 Provide and Register Document Set-b: SOAP 1.2
         with MTOM/XOP (multipart/related, application/xop+xml root), lcm:SubmitObjectsRequest + the CDA
         → rs:RegistryResponse (MTOM, HTTP 200): Success, or Failure with RegistryError codes
           (XDSRegistryMetadataError, XDSRepositoryMetadataError, XDSUnknownPatientId for an INS that is
           not a test INS or has no DMP, XDSPatientIdDoesNotMatch, XDSMissingDocument...); a request
           that is not ITI-41 → SOAP Fault (HTTP 400, 415). Checks and storage: :mod:`sandbox.dmp_registry`
    POST /dp/consult                      [dp]     {"nir", "holder_nir"?, "rank", "birth_date", "since"}
         → {"dispensations": [{"day", "cip13", "label", "quantity", "pharmacy"}]} on or after ``since``,
           newest first: the population's (:data:`sandbox.population.DP_HISTORIES`) and those fed here;
           404 DP_UNKNOWN (a card the DP does not know: NIR, birth date and rank must match)
    POST /dp/dispensations                [dp]     Idempotency-Key
         {"nir", "holder_nir"?, "rank", "birth_date", "dispensed_on", "pharmacy": {"finess", "name"},
          "lines": [{"cip13", "quantity", "lot"?}]}
         → 201 {"status": "recorded", "dp_id", "lines"}; 404 DP_UNKNOWN, 422 DP_PHARMACY_UNKNOWN (no FINESS)
    The Dossier Pharmaceutique's protocol is not public (vendors get it under agreement): this JSON is
    invented, for the port :meth:`appliance.teleservices.Teleservices.dp_consult` and the ``dp`` stream.

Pro Santé Connect (the e-CPS login, OpenID Connect CIBA in poll mode) is served under
``/psc/auth/realms/esante-wallet`` (discovery, JWKS, backchannel authentication, token, userinfo) and
its phone under ``/_sandbox/psc/`` (approve, deny, settings): see :mod:`sandbox.psc`.

Idempotency: a successful answer is kept per (service, key) and replayed (header ``Idempotent-Replay:
true``) for the same key and payload; the same key with another payload is a 422 KEY_REUSED. Refusals
are not kept, so a retry is judged again.

Amounts: a claim is consistent when amo + amc + patient = total and, when its lines carry
``amount_cents``, when they add up to the total; otherwise its batch gets a negative ARL.

Destination: a claim goes to the fund (``amo_regime`` + ``amo_fund``, the *organisme destinataire*)
it names, else to the one on the beneficiary's carte Vitale; a fund that does not manage the
beneficiary in the register (what ADRi answers) refuses it ("NIR du bénéficiaire inconnu de
l'organisme destinataire": the ``arl-rejected`` case, whose card names her former fund). A claim number
already accepted in a positively acknowledged batch is refused as a duplicate; one seen before only in
refused batches is a claim sent again, judged like any other.

Test endpoints (not counted, no faults)::

    GET    /_sandbox/state   → {"requests": {service: n}, "executions": [...], "dispensations": [...],
                                "batches": [...], "remittances": [...], "dmp_documents": [...],
                                "dp_dispensations": [...], "faults": {...}}
    POST   /_sandbox/faults  {"service": name | "*", "latency_ms"?, "error_status"?: 5xx, "hang"?,
                              "drop_response"?, "times"?: n (default: until cleared)}
    DELETE /_sandbox/faults  clear every fault
    POST   /_sandbox/reset   clear faults, counters and everything received
    GET    /_sandbox/health  → {"status": "ok"}

Faults apply in this order: latency, then hang (no answer and no effect, until the client closes the
connection, the server stops or ``max_hang`` passes), then ``error_status`` (no effect), then the
request is applied and, with ``drop_response``, the connection is closed without an answer
("committed but the response was lost").
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import select
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from appliance.domain import (
    AmcRights,
    AmoRights,
    Beneficiary,
    Ins,
    Prescription,
    Traits,
)
from sandbox import dmp_registry, insi_soap
from sandbox.population import CLAIM_REJECTIONS, POPULATION, AmcMembership, Person, Population
from sandbox.psc import CONTROL_PREFIX as PSC_CONTROL
from sandbox.psc import PREFIX as PSC_PREFIX
from sandbox.psc import PscProvider

SERVICES = ("apcv", "insi", "adri", "idb", "dld", "eprescription", "execution", "batch", "remittance", "dmp", "dp")
DMP_TYPES = tuple(dmp_registry.DOCUMENT_TYPES.values())
MAX_BODY = 1 << 20
Json = dict[str, Any]


class SandboxRefusal(Exception):
    """A refusal answered as ``status`` with ``{"code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> SandboxRefusal:
    return SandboxRefusal(400, "BAD_REQUEST", message)


# --- JSON of the domain types


def traits_json(t: Traits) -> Json:
    return {
        "birth_name": t.birth_name,
        "first_names": t.first_names,
        "sex": t.sex,
        "birth_date": t.birth_date.isoformat(),
        "birth_place": t.birth_place,
    }


def ins_json(ins: Ins) -> Json:
    return {"matricule": ins.matricule, "oid": ins.oid, "traits": traits_json(ins.traits)}


def beneficiary_json(b: Beneficiary) -> Json:
    return {"nir": b.nir, "rank": b.rank, "holder_nir": b.holder_nir, "traits": traits_json(b.traits)}


def amo_json(r: AmoRights) -> Json:
    return {
        "nir": r.nir,
        "regime": r.regime,
        "fund": r.fund,
        "valid_from": r.valid_from.isoformat(),
        "valid_to": r.valid_to.isoformat(),
        "ald": r.ald,
        "c2s": r.c2s,
    }


def amc_json(r: AmcRights) -> Json:
    return {
        "amc_number": r.amc_number,
        "member_number": r.member_number,
        "valid_from": r.valid_from.isoformat(),
        "valid_to": r.valid_to.isoformat(),
        "coverage_pct": r.coverage_pct,
        "accreditation": r.accreditation,
        "conventions": list(r.conventions),
    }


def prescription_json(p: Prescription) -> Json:
    return {
        "prescription_id": p.prescription_id,
        "prescriber": p.prescriber,
        "prescribed_on": p.prescribed_on.isoformat(),
        "renewals": p.renewals,
        "patient_nir": p.patient_nir,
        "prescriber_mailbox": p.prescriber_mailbox,
        "patient": None
        if p.patient is None
        else {
            "birth_name": p.patient.birth_name,
            "first_names": p.patient.first_names,
            "birth_date": p.patient.birth_date.isoformat(),
        },
        "lines": [
            {
                "line_no": li.line_no,
                "label": li.label,
                "quantity": li.quantity,
                "cip13": li.cip13,
                "ald": li.ald,
            }
            for li in p.lines
        ],
    }


# --- request helpers


def _str(body: Json, name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _bad(f"champ {name!r} manquant ou invalide")
    return value


def _int(body: Json, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"champ {name!r} manquant ou non entier")
    return value


def _day(body: Json, name: str) -> date:
    text = _str(body, name)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _bad(f"champ {name!r} : date {text!r} invalide (AAAA-MM-JJ attendu)") from None


def _fr(day: date) -> str:
    return day.strftime("%d/%m/%Y")


# --- faults and state


@dataclass
class Fault:
    latency_ms: int = 0
    error_status: int | None = None
    hang: bool = False
    drop_response: bool = False
    times: int | None = None
    """How many more requests it applies to; None until cleared."""


@dataclass
class SandboxState:
    """Everything the sandbox received, guarded by ``lock``."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    requests: Counter[str] = field(default_factory=Counter)
    faults: dict[str, Fault] = field(default_factory=dict)
    executions: list[Json] = field(default_factory=list)
    dispensations: dict[tuple[str, int], Json] = field(default_factory=dict)
    batches: dict[str, Json] = field(default_factory=dict)
    remittances: list[Json] = field(default_factory=list)
    dmp_documents: list[Json] = field(default_factory=list)
    dp_dispensations: list[Json] = field(default_factory=list)
    """What pharmacies fed to the Dossier Pharmaceutique: ``{"key", "dp_id", "nir", "dispensed_on",
    "pharmacy", "lines"}``."""
    replies: dict[tuple[str, str], tuple[str, int, Json]] = field(default_factory=dict)
    serial: Counter[str] = field(default_factory=Counter)
    accepted_claims: dict[str, str] = field(default_factory=dict)
    """Claim number -> the positively acknowledged batch it was accepted in (duplicates are refused)."""

    def next_id(self, prefix: str) -> str:
        self.serial[prefix] += 1
        return f"{prefix}-{self.serial[prefix]:06d}"

    def take_fault(self, service: str) -> Fault | None:
        with self.lock:
            name = service if service in self.faults else "*"
            fault = self.faults.get(name)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[name]
            return fault

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.executions.clear()
            self.dispensations.clear()
            self.batches.clear()
            self.remittances.clear()
            self.dmp_documents.clear()
            self.dp_dispensations.clear()
            self.replies.clear()
            self.serial.clear()
            self.accepted_claims.clear()

    def snapshot(self) -> Json:
        with self.lock:
            return {
                "requests": {s: self.requests[s] for s in SERVICES},
                "executions": list(self.executions),
                "dispensations": [
                    {"prescription_id": rx, "renewal": renewal, **d} for (rx, renewal), d in self.dispensations.items()
                ],
                "batches": list(self.batches.values()),
                "remittances": list(self.remittances),
                "dmp_documents": list(self.dmp_documents),
                "dp_dispensations": list(self.dp_dispensations),
                "faults": {name: asdict(f) for name, f in self.faults.items()},
            }


def _fingerprint(body: Json) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _accreditation(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join((kind, *parts)).encode()).hexdigest()
    return f"{kind}{int(digest[:12], 16) % 10**10:010d}"


# --- the services


class Services:
    """The sandbox's answers, independent of HTTP (the handler maps paths to these methods)."""

    def __init__(self, population: Population, state: SandboxState, today: Callable[[], date]) -> None:
        self.population = population
        self.state = state
        self.today = today

    # apCV
    def apcv_context(self, body: Json) -> tuple[int, Json]:
        try:
            token = base64.b64decode(_str(body, "token"), validate=True)
        except binascii.Error:
            raise _bad("champ 'token' : base64 invalide") from None
        context = self.population.apcv_contexts.get(token)
        if context is None:
            raise SandboxRefusal(
                404,
                "APCV_UNKNOWN",
                "Contexte appli carte Vitale inconnu : demandez au patient de générer un nouveau QR code.",
            )
        case_key, expired = context
        if expired:
            raise SandboxRefusal(
                410,
                "APCV_EXPIRED",
                "Le QR code de l'appli carte Vitale a expiré : demandez au patient d'en afficher un nouveau.",
            )
        people = self.population.members(case_key)
        return 200, {
            "beneficiaries": [beneficiary_json(p.beneficiary) for p in people],
            "ins": {p.beneficiary.nir: ins_json(p.ins) for p in people if p.ins is not None},
            "expires_at": time.time() + 600,
        }

    # INSi (SOAP 1.2)
    def insi(self, envelope: bytes, content_type: str) -> tuple[int, bytes]:
        """One INSi request → (HTTP status, SOAP envelope): a RESULTAT, or a Fault naming what is wrong."""
        try:
            call = insi_soap.read_request(envelope, content_type)
        except insi_soap.RequestFault as fault:
            return fault.status, insi_soap.fault_envelope(fault)
        if call.card is not None:
            result = self.population.insi_by_card(call.card.holder_nir, call.card.birth_date, call.card.rank)
        elif call.traits is not None:
            result = self.population.insi_by_traits(call.traits)
        else:  # pragma: no cover - read_request gives one or the other
            raise AssertionError("an INSi call searches by card or by traits")
        return 200, insi_soap.result_envelope(result)

    # ADRi
    def adri(self, body: Json) -> tuple[int, Json]:
        birth = _day(body, "birth_date") if body.get("birth_date") else None
        found = self.population.find_beneficiary(
            _str(body, "nir"), _str(body, "holder_nir", required=False), birth, _int(body, "rank", 1)
        )
        _day(body, "day")
        if found is None:
            raise SandboxRefusal(
                404, "ADRI_UNKNOWN", "Bénéficiaire inconnu de l'assurance maladie : vérifiez la carte Vitale."
            )
        return 200, amo_json(found.amo)

    # IDB / DLD
    def _membership(self, body: Json) -> tuple[AmcMembership, str, str, date]:
        amc_number, member = _str(body, "amc_number"), _str(body, "member_number")
        nir, day = _str(body, "nir"), _day(body, "day")
        covered: list[Person] = self.population.memberships(amc_number, member)
        if not covered:
            raise SandboxRefusal(
                404, "AMC_UNKNOWN", f"Adhérent {member} inconnu de l'organisme complémentaire {amc_number}."
            )
        if not any(p.beneficiary.nir == nir for p in covered):
            raise SandboxRefusal(
                404, "AMC_NOT_COVERED", "Ce bénéficiaire n'est pas couvert par ce contrat de mutuelle."
            )
        membership = covered[0].amc
        if membership is None:  # memberships() only returns people with a contract
            raise SandboxRefusal(404, "AMC_UNKNOWN", f"Adhérent {member} inconnu.")
        return membership, nir, member, day

    def idb(self, body: Json) -> tuple[int, Json]:
        m, nir, member, day = self._membership(body)
        if day > m.valid_to:
            raise SandboxRefusal(
                422,
                "AMC_EXPIRED",
                f"Droits mutuelle expirés le {_fr(m.valid_to)} : lancez une demande de droits (DLD).",
            )
        if day < m.valid_from:
            raise SandboxRefusal(
                422, "AMC_NOT_STARTED", f"Droits mutuelle ouverts seulement à partir du {_fr(m.valid_from)}."
            )
        accreditation = _accreditation("IDB", m.amc_number, member, nir, day.isoformat())
        rights = AmcRights(m.amc_number, member, m.valid_from, m.valid_to, m.coverage_pct, accreditation, m.conventions)
        return 200, amc_json(rights)

    def dld(self, body: Json) -> tuple[int, Json]:
        m, nir, member, day = self._membership(body)
        start, end = m.valid_from, m.valid_to
        if day > m.valid_to:
            if m.renewed_to is None or day > m.renewed_to:
                raise SandboxRefusal(
                    422,
                    "AMC_TERMINATED",
                    "Aucun droit mutuelle ouvert à cette date : le patient règle la part complémentaire.",
                )
            start, end = m.valid_to + timedelta(days=1), m.renewed_to
        if day < start:
            raise SandboxRefusal(422, "AMC_NOT_STARTED", f"Droits mutuelle ouverts seulement à partir du {_fr(start)}.")
        accreditation = _accreditation("DLD", m.amc_number, member, nir, day.isoformat())
        rights = AmcRights(m.amc_number, member, start, end, m.coverage_pct, accreditation, m.conventions)
        return 200, amc_json(rights)

    # ePrescription
    def _prescription(self, prescription_id: str) -> Prescription:
        rx = self.population.prescriptions.get(prescription_id)
        if rx is None:
            raise SandboxRefusal(
                404,
                "EP_UNKNOWN",
                f"Ordonnance numérique {prescription_id} introuvable : vérifiez l'identifiant.",
            )
        return rx

    def prescription(self, prescription_id: str) -> tuple[int, Json]:
        return 200, prescription_json(self._prescription(prescription_id))

    def execution(self, key: str, body: Json) -> tuple[int, Json]:
        step = _int(body, "step")
        rx = self._prescription(_str(body, "prescription_id"))
        renewal = _int(body, "renewal", 0)
        if not 0 <= renewal <= rx.renewals:
            raise SandboxRefusal(
                422,
                "RENEWAL_UNKNOWN",
                f"Renouvellement n°{renewal} non prévu par l'ordonnance ({rx.renewals} renouvellement(s)).",
            )
        slot = (rx.prescription_id, renewal)
        record = self.state.dispensations.get(slot)
        if step == 1:
            if record is not None:
                raise SandboxRefusal(
                    409,
                    "ALREADY_DISPENSED",
                    "Ordonnance déjà délivrée le "
                    + date.fromisoformat(str(record["dispensed_on"])).strftime("%d/%m/%Y")
                    + (f" (renouvellement n°{renewal})." if renewal else "."),
                )
            record = {
                "execution_id": self.state.next_id("EX"),
                "dispensed_on": body.get("dispensed_on") or self.today().isoformat(),
                "step1_key": key,
                "step2_key": None,
            }
            self.state.dispensations[slot] = record
            status = "recorded"
        elif step == 2:
            if record is None:
                raise SandboxRefusal(
                    409,
                    "STEP1_MISSING",
                    "Données d'exécution incomplètes : la délivrance n'a pas été transmise.",
                )
            if record["step2_key"] is not None:
                raise SandboxRefusal(409, "ALREADY_COMPLETED", "Données d'exécution déjà complétées.")
            batch_number = body.get("batch_number")
            if batch_number is not None:
                batch = self.state.batches.get(str(batch_number))
                if batch is None or batch["ack"]["ack"] != "positive":
                    raise SandboxRefusal(
                        409,
                        "BATCH_NOT_ACKNOWLEDGED",
                        f"Le lot {batch_number} n'a pas reçu d'accusé de réception positif.",
                    )
            _str(body, "claim_number")
            record["step2_key"] = key
            status = "completed"
        else:
            raise _bad("champ 'step' : 1 (délivrance) ou 2 (facturation) attendu")
        self.state.executions.append({"key": key, **body})
        return 201, {
            "status": status,
            "step": step,
            "execution_id": record["execution_id"],
            "prescription_id": rx.prescription_id,
            "renewal": renewal,
        }

    # claims
    def _claim_problem(self, claim: Json) -> tuple[str, str] | None:
        person = self.population.find_beneficiary(str(claim["nir"]))
        if person is not None:
            card = person.card_amo
            destination = (claim.get("amo_regime") or card.regime, claim.get("amo_fund") or card.fund)
            if destination != (person.amo.regime, person.amo.fund):
                return CLAIM_REJECTIONS["arl-negative"]
        number = str(claim["claim_number"])
        accepted_in = self.state.accepted_claims.get(number)
        if accepted_in is not None:
            return (
                f"FSE n° {number} déjà reçue dans le lot {accepted_in} (doublon)",
                "Ne pas refacturer : cette facture a déjà été acceptée",
            )
        total = claim["total_cents"]
        if claim["amo_cents"] + claim["amc_cents"] + claim["patient_cents"] != total:
            return (
                "Montants incohérents : part AMO + part AMC + part assuré ≠ montant total",
                "Recalculer la facture et renvoyer la FSE dans un nouveau lot",
            )
        lines = claim.get("lines") or []
        amounts = [li.get("amount_cents") for li in lines if isinstance(li, dict)]
        if amounts and all(isinstance(a, int) for a in amounts) and sum(a for a in amounts if a) != total:
            return (
                "Montant total différent de la somme des lignes",
                "Recalculer la facture et renvoyer la FSE dans un nouveau lot",
            )
        return None

    def batch(self, key: str, body: Json) -> tuple[int, Json]:
        batch_number = _str(body, "batch_number")
        claims = body.get("claims")
        if not isinstance(claims, list) or not claims:
            raise _bad("un lot contient au moins une FSE ('claims')")
        for claim in claims:
            if not isinstance(claim, dict):
                raise _bad("chaque FSE est un objet JSON")
            _str(claim, "claim_number")
            _str(claim, "nir")
            for name in ("total_cents", "amo_cents", "amc_cents", "patient_cents"):
                _int(claim, name)
        if batch_number in self.state.batches:
            raise SandboxRefusal(409, "BATCH_DUPLICATE", f"Lot {batch_number} déjà reçu.")
        rejected = []
        for claim in claims:
            problem = self._claim_problem(claim)
            if problem:
                rejected.append({"claim_number": claim["claim_number"], "reason": problem[0], "action": problem[1]})
        today = self.today()
        ack: Json = {
            "ack": "negative" if rejected else "positive",
            "ack_id": self.state.next_id("ARL"),
            "batch_number": batch_number,
            "claims": len(claims),
            "received_on": today.isoformat(),
        }
        if rejected:
            ack["reason"] = f"Lot rejeté : {len(rejected)} FSE en anomalie ({rejected[0]['reason']})"
            ack["rejected_claims"] = rejected
        self.state.batches[batch_number] = {"key": key, "batch": body, "ack": ack}
        if not rejected:
            for claim in claims:
                self.state.accepted_claims[str(claim["claim_number"])] = batch_number
            self._remit(batch_number, claims, today)
        return 201, ack

    def _remit(self, batch_number: str, claims: list[Json], today: date) -> None:
        by_payer: dict[str, list[Json]] = {}
        for claim in claims:
            person = self.population.find_beneficiary(str(claim["nir"]))
            if person is not None and person.claim_outcome == "payment-rejected":
                reason, action = CLAIM_REJECTIONS["payment-rejected"]
                entry = {"claim_number": claim["claim_number"], "status": "rejected", "paid_cents": 0}
                by_payer.setdefault("AMO", []).append({**entry, "reason": reason, "action": action})
                continue
            paid = {"claim_number": claim["claim_number"], "status": "paid"}
            by_payer.setdefault("AMO", []).append({**paid, "paid_cents": claim["amo_cents"]})
            if claim["amc_cents"]:
                payer = str(claim.get("amc_number") or "AMC")
                by_payer.setdefault(payer, []).append({**paid, "paid_cents": claim["amc_cents"]})
        for payer, entries in by_payer.items():
            remittance_id = self.state.next_id("RSP")
            self.state.remittances.append(
                {
                    "remittance_id": remittance_id,
                    "payer": payer,
                    "batch_number": batch_number,
                    "paid_on": today.isoformat(),
                    "payment_reference": f"VIR {payer} {remittance_id}",
                    "total_paid_cents": sum(e["paid_cents"] for e in entries),
                    "claims": entries,
                }
            )

    def remittances(self, query: dict[str, list[str]]) -> tuple[int, Json]:
        since_text = (query.get("since") or [""])[0]
        since = _day({"since": since_text}, "since") if since_text else date.min
        found = [r for r in self.state.remittances if date.fromisoformat(r["paid_on"]) >= since]
        return 200, {"remittances": found}

    def remittance_files(self, query: dict[str, list[str]]) -> tuple[int, Json]:
        from sandbox.payments import noemie_files

        _, answer = self.remittances(query)
        return 200, {"files": noemie_files(answer["remittances"])}

    # Dossier Pharmaceutique (invented JSON: the real protocol is not public)
    def _dp_person(self, body: Json) -> Person:
        """The beneficiary whose DP the card opens: their NIR or the card holder's, with their birth date
        and rank (a child on a parent's card is told apart by these)."""
        nir, birth, rank = _str(body, "nir"), _day(body, "birth_date"), _int(body, "rank", 1)
        holder = _str(body, "holder_nir", required=False) or nir
        found = next(
            (
                p
                for p in self.population.people.values()
                if p.beneficiary.traits.birth_date == birth
                and p.beneficiary.rank == rank
                and (p.beneficiary.nir == nir or p.beneficiary.holder_nir == holder)
            ),
            None,
        )
        if found is None:
            raise SandboxRefusal(
                404,
                "DP_UNKNOWN",
                "Dossier pharmaceutique introuvable pour ce bénéficiaire : vérifiez la carte Vitale.",
            )
        return found

    def dp_consult(self, body: Json) -> tuple[int, Json]:
        from sandbox.population import products

        person, since = self._dp_person(body), _day(body, "since")
        names = {p.cip13: p.name for p in products()}
        entries: list[Json] = [
            {
                "day": e.day.isoformat(),
                "cip13": e.cip13,
                "label": e.label,
                "quantity": e.quantity,
                "pharmacy": e.pharmacy,
            }
            for e in self.population.dp_histories.get(person.key, ())
        ]
        for fed in self.state.dp_dispensations:
            if fed["nir"] == person.beneficiary.nir:
                entries += [
                    {
                        "day": fed["dispensed_on"],
                        "cip13": line["cip13"],
                        "label": names.get(line["cip13"], f"CIP {line['cip13']}"),
                        "quantity": line["quantity"],
                        "pharmacy": fed["pharmacy"],
                    }
                    for line in fed["lines"]
                ]
        found = [e for e in entries if date.fromisoformat(str(e["day"])) >= since]
        found.sort(key=lambda e: str(e["day"]), reverse=True)
        return 200, {"dispensations": found}

    def dp_feed(self, key: str, body: Json) -> tuple[int, Json]:
        person = self._dp_person(body)
        day = _day(body, "dispensed_on")
        pharmacy = body.get("pharmacy")
        if not isinstance(pharmacy, dict) or not isinstance(pharmacy.get("finess"), str) or not pharmacy["finess"]:
            raise SandboxRefusal(
                422, "DP_PHARMACY_UNKNOWN", "Pharmacie non identifiée (FINESS) : délivrance refusée par le DP."
            )
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            raise _bad("une délivrance contient au moins une ligne ('lines')")
        for line in lines:
            if not isinstance(line, dict):
                raise _bad("chaque ligne est un objet JSON")
            _str(line, "cip13")
            if _int(line, "quantity") < 1:
                raise _bad("champ 'quantity' : au moins 1")
        dp_id = self.state.next_id("DP")
        name = str(pharmacy.get("name") or "") or f"FINESS {pharmacy['finess']}"
        self.state.dp_dispensations.append(
            {
                "key": key,
                "dp_id": dp_id,
                "nir": person.beneficiary.nir,
                "dispensed_on": day.isoformat(),
                "pharmacy": name,
                "lines": [{"cip13": li["cip13"], "quantity": li["quantity"], "lot": li.get("lot")} for li in lines],
            }
        )
        return 201, {"status": "recorded", "dp_id": dp_id, "lines": len(lines)}

    # DMP (IHE ITI-41)
    def dmp(self, content_type: str, body: bytes) -> tuple[int, str, bytes]:
        """One Provide and Register Document Set-b request → (HTTP status, Content-Type, body)."""
        with self.state.lock:
            return dmp_registry.provide_and_register(
                content_type,
                body,
                known_ins=lambda matricule: self.population.find_by_ins(matricule) is not None,
                documents=self.state.dmp_documents,
                replies=self.state.replies,
                next_id=self.state.next_id,
                today=self.today,
            )


# --- HTTP


Handler = Callable[[Services, "Request"], tuple[int, Json]]


@dataclass(frozen=True)
class Request:
    body: Json
    key: str
    query: dict[str, list[str]]
    tail: str


@dataclass(frozen=True)
class Route:
    service: str
    handler: Handler
    idempotent: bool = False


_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/apcv/context"): Route("apcv", lambda s, r: s.apcv_context(r.body)),
    ("POST", "/adri"): Route("adri", lambda s, r: s.adri(r.body)),
    ("POST", "/amc/idb"): Route("idb", lambda s, r: s.idb(r.body)),
    ("POST", "/amc/dld"): Route("dld", lambda s, r: s.dld(r.body)),
    ("GET", "/eprescription/prescriptions/"): Route("eprescription", lambda s, r: s.prescription(r.tail)),
    ("POST", "/eprescription/executions"): Route("execution", lambda s, r: s.execution(r.key, r.body), True),
    ("POST", "/claims/batches"): Route("batch", lambda s, r: s.batch(r.key, r.body), True),
    ("GET", "/claims/remittances"): Route("remittance", lambda s, r: s.remittances(r.query)),
    ("GET", "/claims/remittances/noemie"): Route("remittance", lambda s, r: s.remittance_files(r.query)),
    ("POST", "/dp/consult"): Route("dp", lambda s, r: s.dp_consult(r.body)),
    ("POST", "/dp/dispensations"): Route("dp", lambda s, r: s.dp_feed(r.key, r.body), True),
}


SOAP_ROUTES: dict[str, str] = {"/lps": "insi"}
"""POST paths answered in SOAP 1.2 → service name (the CNAM services' gateway path)."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    sandbox: SandboxServer

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.open_connections: set[socket.socket] = set()
        self.connections_changed = threading.Condition()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_changed:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (its timeout) before the answer, or that TLS turned away (no client
        certificate, when a test wraps the socket for mutual TLS), is normal here: say nothing about it."""
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_changed:
            self.open_connections.discard(request)
            self.connections_changed.notify_all()
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    """Idle keep-alive connections are closed after this many seconds."""
    server_version = "comptoir-sandbox/1"
    disable_nagle_algorithm = True
    """Headers and body go out in separate writes: without TCP_NODELAY each answer on a kept-alive
    connection waits ~40 ms for the client's delayed ACK (measured by bench/session.py)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines carry prescription ids, and the tests read their own output."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send_bytes(status, data, "application/json; charset=utf-8", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_soap(self, status: int, envelope: bytes) -> None:
        self._send_bytes(status, envelope, "application/soap+xml; charset=utf-8")

    def _read_raw(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _bad("en-tête Content-Length invalide") from None
        if length > MAX_BODY:
            raise SandboxRefusal(413, "TOO_LARGE", "requête trop volumineuse")
        return self.rfile.read(length) if length > 0 else b""

    def _read_body(self) -> Json:
        return self._json(self._read_raw())

    @staticmethod
    def _json(raw: bytes) -> Json:
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _bad("corps de requête JSON invalide") from None
        if not isinstance(body, dict):
            raise _bad("le corps de requête doit être un objet JSON")
        return body

    def _dispatch(self, method: str) -> None:
        if method == "POST" and urlsplit(self.path).path == dmp_registry.PATH:
            self._dmp()
            return
        if urlsplit(self.path).path.startswith((PSC_PREFIX, PSC_CONTROL)):
            self._psc(method)
            return
        sandbox = self.server.sandbox
        url = urlsplit(self.path)
        soap_service = SOAP_ROUTES.get(url.path) if method == "POST" else None
        try:
            raw = self._read_raw()
            body = {} if soap_service else self._json(raw)
        except SandboxRefusal as refusal:
            self.close_connection = True
            if soap_service:
                self._send_soap(refusal.status, insi_soap.fault_envelope(insi_soap.RequestFault(refusal.message)))
            else:
                self._send(refusal.status, {"code": refusal.code, "message": refusal.message})
            return
        if url.path.startswith("/_sandbox/"):
            self._control(method, url.path, body)
            return
        route, tail = _ROUTES.get((method, url.path)), ""
        prefix = "/eprescription/prescriptions/"
        if route is None and method == "GET" and url.path.startswith(prefix) and len(url.path) > len(prefix):
            route, tail = _ROUTES[("GET", prefix)], url.path[len(prefix) :]
        if route is None and soap_service is None:
            self._send(404, {"code": "NOT_FOUND", "message": f"pas de service {method} {url.path}"})
            return
        service = route.service if route is not None else str(soap_service)
        state = sandbox.state
        with state.lock:
            state.requests[service] += 1
        fault = state.take_fault(service)
        if fault is not None:
            if fault.latency_ms and sandbox.stopping.wait(fault.latency_ms / 1000):
                self.close_connection = True
                return
            if fault.hang:
                self._hang()
                return
            if fault.error_status:
                if route is None:
                    self._send_soap(fault.error_status, insi_soap.unavailable_envelope())
                    return
                self._send(
                    fault.error_status,
                    {"code": "SERVICE_UNAVAILABLE", "message": "Service momentanément indisponible."},
                )
                return
        if route is None:
            with state.lock:
                soap_status, envelope = sandbox.services.insi(raw, self.headers.get("Content-Type", ""))
        else:
            status, answer, headers = self._apply(
                route, Request(body, self.headers.get("Idempotency-Key", ""), parse_qs(url.query), tail)
            )
        if fault is not None and fault.drop_response:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if route is None:
            self._send_soap(soap_status, envelope)
        else:
            self._send(status, answer, headers)

    def _apply(self, route: Route, request: Request) -> tuple[int, Json, dict[str, str]]:
        state = self.server.sandbox.state
        services = self.server.sandbox.services
        try:
            with state.lock:
                if not route.idempotent:
                    status, answer = route.handler(services, request)
                    return status, answer, {}
                if not request.key:
                    raise _bad("en-tête Idempotency-Key manquant")
                slot = (route.service, request.key)
                fingerprint = _fingerprint(request.body)
                if slot in state.replies:
                    known, status, answer = state.replies[slot]
                    if known != fingerprint:
                        raise SandboxRefusal(
                            422, "KEY_REUSED", "Clé d'idempotence déjà utilisée pour un autre message."
                        )
                    return status, answer, {"Idempotent-Replay": "true"}
                status, answer = route.handler(services, request)
                if 200 <= status < 300:
                    state.replies[slot] = (fingerprint, status, answer)
                return status, answer, {}
        except SandboxRefusal as refusal:
            return refusal.status, {"code": refusal.code, "message": refusal.message}, {}

    def _dmp(self) -> None:
        """The DMP's ITI-41 endpoint: SOAP with MTOM, not JSON; counted and faulted as service ``dmp``."""
        sandbox = self.server.sandbox
        try:
            raw = self._read_raw()
        except SandboxRefusal as refusal:
            self.close_connection = True
            unreadable = dmp_registry.Fault(refusal.message)
            envelope = dmp_registry.fault_envelope(unreadable)
            self._send_bytes(refusal.status, envelope, "application/soap+xml; charset=utf-8")
            return
        with sandbox.state.lock:
            sandbox.state.requests["dmp"] += 1
        fault = sandbox.state.take_fault("dmp")
        if fault is not None:
            if fault.latency_ms and sandbox.stopping.wait(fault.latency_ms / 1000):
                self.close_connection = True
                return
            if fault.hang:
                self._hang()
                return
            if fault.error_status:
                busy = dmp_registry.Fault("Service momentanément indisponible.", code="Receiver")
                self._send_bytes(
                    fault.error_status, dmp_registry.fault_envelope(busy), "application/soap+xml; charset=utf-8"
                )
                return
        status, content_type, answer = sandbox.services.dmp(self.headers.get("Content-Type", ""), raw)
        if fault is not None and fault.drop_response:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_bytes(status, answer, content_type)

    def _psc(self, method: str) -> None:
        """Pro Santé Connect (:mod:`sandbox.psc`): forms and JWTs, not this server's JSON services."""
        sandbox = self.server.sandbox
        try:
            raw = self._read_raw()
        except SandboxRefusal as refusal:
            self.close_connection = True
            self._send(refusal.status, {"error": "invalid_request", "error_description": refusal.message})
            return
        url = urlsplit(self.path)
        headers = {name: self.headers.get(name, "") for name in ("Authorization", "Content-Type")}
        status, content_type, answer, extra = sandbox.psc.handle(method, url.path, headers, raw, sandbox.url)
        self._send_bytes(status, answer, content_type, extra)

    def _hang(self) -> None:
        """Answer nothing until the client gives up, the server stops or ``max_hang`` passes."""
        self.close_connection = True
        sandbox = self.server.sandbox
        deadline = time.monotonic() + sandbox.max_hang
        while not sandbox.stopping.is_set() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed the connection
            except OSError:
                return
            if readable:
                sandbox.stopping.wait(0.05)

    def _control(self, method: str, path: str, body: Json) -> None:
        sandbox = self.server.sandbox
        state = sandbox.state
        if (method, path) == ("GET", "/_sandbox/state"):
            self._send(200, state.snapshot())
        elif (method, path) == ("GET", "/_sandbox/health"):
            self._send(200, {"status": "ok"})
        elif (method, path) == ("POST", "/_sandbox/reset"):
            state.reset()
            self._send(200, {"status": "reset"})
        elif (method, path) == ("DELETE", "/_sandbox/faults"):
            with state.lock:
                state.faults.clear()
            self._send(200, {"faults": {}})
        elif (method, path) == ("POST", "/_sandbox/faults"):
            try:
                name, fault = _parse_fault(body)
            except SandboxRefusal as refusal:
                self._send(refusal.status, {"code": refusal.code, "message": refusal.message})
                return
            with state.lock:
                state.faults[name] = fault
            self._send(200, {"faults": state.snapshot()["faults"]})
        else:
            self._send(404, {"code": "NOT_FOUND", "message": f"pas de service {method} {path}"})


def _parse_fault(body: Json) -> tuple[str, Fault]:
    name = body.get("service", "*")
    if name not in (*SERVICES, "*"):
        raise _bad(f"service {name!r} inconnu ({', '.join(SERVICES)} ou *)")
    fault = Fault(
        latency_ms=_int(body, "latency_ms", 0),
        error_status=body.get("error_status"),
        hang=bool(body.get("hang", False)),
        drop_response=bool(body.get("drop_response", False)),
        times=body.get("times"),
    )
    if fault.error_status is not None and (
        not isinstance(fault.error_status, int) or not 500 <= fault.error_status <= 599
    ):
        raise _bad("error_status doit être un code 5xx")
    if fault.times is not None and (not isinstance(fault.times, int) or fault.times < 1):
        raise _bad("times doit être un entier positif")
    if fault.latency_ms < 0:
        raise _bad("latency_ms doit être positif")
    return str(name), fault


class SandboxServer:
    """The sandbox teleservices on ``host:port`` (port 0: any free port, see :attr:`url`)."""

    def __init__(
        self,
        port: int = 0,
        population: Population = POPULATION,
        *,
        host: str = "127.0.0.1",
        today: Callable[[], date] = date.today,
        max_hang: float = 10.0,
        psc: PscProvider | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.population = population
        self.max_hang = max_hang
        self.state = SandboxState()
        self.services = Services(population, self.state, today)
        self.psc = psc or PscProvider()
        """Pro Santé Connect (e-CPS login by CIBA) under ``/psc/``, its phone under ``/_sandbox/psc/``."""
        self.stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _bind(self) -> _HttpServer:
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already started")
        self.stopping.clear()
        self._httpd = _HttpServer((self.host, self.port), self)
        return self._httpd

    def start(self) -> str:
        """Listen and serve from a background thread; returns the base URL."""
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self.url

    def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        """Listen and serve from this thread until :meth:`stop` (from another thread) or Ctrl-C.

        ``ready`` is called with the base URL once the socket listens.
        """
        httpd = self._bind()
        try:
            if ready is not None:
                ready(self.url)
            httpd.serve_forever(poll_interval=0.05)
        except KeyboardInterrupt:
            pass
        finally:
            self._close(httpd, timeout=2.0)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut open connections (hanging requests included) and close the socket."""
        httpd = self._httpd
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            self._close(httpd, timeout)

    def _close(self, httpd: _HttpServer, timeout: float) -> None:
        self.stopping.set()
        with httpd.connections_changed:
            for conn in list(httpd.open_connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            httpd.connections_changed.wait_for(lambda: not httpd.open_connections, timeout)
        httpd.server_close()
        if self._httpd is httpd:
            self._httpd = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``comptoir sandbox --port N [--host 127.0.0.1]``."""
    parser = subparsers.add_parser("sandbox", help="serve the sandbox teleservices over HTTP (test identities)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port; default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.set_defaults(func=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        print(f"comptoir sandbox: teleservices on {url} (Ctrl-C to stop)", flush=True)

    SandboxServer(args.port, host=args.host).serve_forever(announce)
    return 0
