"""Payers' payment and rejection returns: NOEMIE PS files as published, and the sandbox's JSON.

The layout is the public NOEMIE PS one (*Norme Ouverte d'Échange entre la Maladie et les Intervenants
Extérieurs*, returns to health professionals: the *Cahier des charges NOEMIE PS* of the CNAMTS, CCMSA,
AMPI and UNRS; the public edition in 2007 is May 2004's, a March 2011 edition exists), as its open
description gives it: ``data/noemie-ps.xml`` of sesamviewer (S. Cresto, 2007, GPL, read and not copied,
https://github.com/scresto09/sesamviewer; its reader ``src/noemie.c`` gives the physical records).
Every entity, field, position (1-based, both ends included, as published), presence and code below is
that description's; :data:`ENTITIES` holds them. What the description leaves unsaid, and how comptoir
reads it, is said under *Reading* below.

Physical file: records of 128 bytes (ISO-8859-1; separated by CR LF or LF, or not separated at all).

- Record 1 is the header ``000``: emitter (type 4-5, number 6-19), recipient (type 26-27, number
  28-41), file identification 50-55, creation date 56-61, norm 62-65, monetary unit 70 (``U`` = euro:
  anything else is refused), record length 83-85 (``128``).
- Records 2 to n-1 carry the *entity stream*: position 1 of each is ``1`` on the last of them (the
  stream there is padded with spaces) and anything else on the others (comptoir writes ``0``);
  positions 2-128 are the next 127 characters of the stream.
- The last record is the trailer ``999``: emitter and recipient again, file identification 50-55,
  number of records 56-63, number of lots 83-85, total of the file 86-96 with its sign 97.

Entity stream: entities one after the other, each ``type`` (3 digits) + ``niveau de rupture``
(level, 2 digits) + fixed-width data, ended by ``@`` at the published length:

====  ===================================================  =====  ================================
type  entity                                               long   fields comptoir reads
====  ===================================================  =====  ================================
020   mandataire (level 01)                                21     number 6-20
040   destinataire de règlement (level 02)                 21     number 6-20
070   date comptable (level 02)                            12     date 6-11
071   date comptable et référence du virement (level 02)   86     date 6-11, label 12-43 and 44-75,
                                                                  paying body 76-85
080   lot                                                  15     date 6-11, lot number 12-14
081   type de retour (level 02)                            22     01 electronic claims, 02 paper,
                                                                  03 flat-rate, 04 recalls, 05 withholdings
100   facture (old form)                                   15     invoice number 6-14
102   facture                                              40     invoice 6-14, lot 21-23, lot date 24-29,
                                                                  invoice type 30, billed on 31-36
103   assuré et bénéficiaire                               152    (checked, not kept: patient data)
110, 120, 150, 160  assuré, malade, nature d'assurance,    88...  (checked, not kept)
      critère d'archivage
198   part AMO                                             24     asked 6-13, state 14 (P paid, R rejected,
                                                                  D deferred, blank untreated), paid 15-22,
                                                                  sign 23
199   part AMC                                             49     as 198, and the AMC number 24-33
210   acte professionnel                                   118    (checked, not kept)
250   mouvement financier - retenue                        47     line 6-7, debt reference 8-17, debt
                                                                  recorded 18-23, debt nature 24-26,
                                                                  operation 27-29, amount 30-37, sign 38,
                                                                  balance of the debt 39-46
261   paiement ponctuel ou forfaitaire                     19     code 6-10, amount 11-18
262   détail paiement ponctuel ou forfaitaire              134    (checked, not kept)
290   rejet ou signalement                                 98     code 8-17, label 18-97
294   ligne rejet                                          153    code 6-9, label 10-95, level 96,
                                                                  part 97 (O compulsory or both, C AMC)
295   ligne commentaire                                    135    (checked, not kept)
990   entité de contrôle (level 99)                        43     count 23-30, total 31-41, sign 42
====  ===================================================  =====  ================================

Reading (where the description is silent):

- Numeric (``N``) fields are digits (blank allowed only where the field is optional); dates are
  ``AAMMJJ`` (years 00-69 are 20xx); amounts are cents. The codes comptoir interprets (states, signs,
  return types, rejection level and part, monetary unit, emitter types) must be published ones; other
  text fields are kept as they are.
- Hierarchy, by entity type: 020 > 040 > 070/071 (one payment, or a return without payment) > 081 >
  080 > 102 > its details (103 ... 210, 294); 250, 261 and 262 belong to the 081; 290 and 295 to the
  innermost open entity. An entity closes the open ones of its rank or below (*rupture*).
- A 990 closes the innermost open level among 020, 040, 070/071, 081, 080 (an open invoice is closed
  with it). Its count is the number of entities directly under that level; its total the signed sum of
  the amounts paid within it (198/199 paid, 250 movements, 261 payments), which is also what the 999
  totals for the file. The 999 counts every record of the file, header and trailer included, and the
  080 lots.

What it gives: one :class:`~appliance.payments.model.Remittance` per 071 payment, identified by the
paying body (071, else the header's emitter) and the transfer label's first line (its reference, the
same across files: one transfer); a 070 return without payment gets an id of its own. Each 198/199
part is a line (paid in full, partial, or rejected with the 294 / 290 reasons: 294 ``O`` applies to
the AMO part and to the AMC part, ``C`` to the AMC part only); deferred and untreated parts are no
line (nothing to reconcile yet); a part paid back (sign N) is a ``correction`` adjustment; 250
withholdings and 261 flat-rate payments are adjustments of the remittance, so its total is what was
transferred. Anything malformed is a :class:`PaymentsFileError` naming the file, the line (record),
the entity type and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from appliance.payments.model import (
    Adjustment,
    AdjustmentKind,
    LineStatus,
    Part,
    PaymentsFileError,
    Remittance,
    RemittanceLine,
    advice_for,
)

RECORD = 128
DATA = RECORD - 1
"""Characters of the entity stream a data record carries (position 1 is its flag)."""
LAST_DATA = "1"
MORE_DATA = "0"
DELIMITER = "@"
ENCODING = "iso-8859-1"

# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class Field:
    """One published zone: positions are 1-based and inclusive, within the entity (or the record)."""

    key: str
    label: str
    start: int
    end: int
    kind: str
    """``N`` digits or ``A`` text, as published."""
    required: bool
    """Published presence ``O`` (for ``N`` zones: digits, never blank)."""
    codes: tuple[str, ...] = ()
    """Published values, checked for the zones comptoir interprets (padded to the zone's width)."""

    @property
    def width(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class EntityLayout:
    type: str
    label: str
    fields: tuple[Field, ...]
    level: str | None = None
    """The published level (niveau de rupture), when fixed."""
    length: int = 0
    """Position of the ``@`` that ends the entity (0 for the 128-byte header and trailer)."""

    def field(self, key: str) -> Field:
        return next(f for f in self.fields if f.key == key)


def _f(key: str, label: str, start: int, end: int, kind: str, presence: str, *codes: str) -> Field:
    width = end - start + 1
    return Field(key, label, start, end, kind, presence == "O", tuple(c.ljust(width) for c in codes))


def _entity(type_: str, label: str, length: int, *fields: Field, level: str | None = None) -> EntityLayout:
    return EntityLayout(type_, label, fields, level, length)


EMITTER_TYPES = (
    "AN", "BF", "CC", "CE", "CF", "CI", "CM", "CP", "CR", "CS", "CT", "EN", "MA", "OC", "OT", "PB", "RM", "RP",
    "SE", "SI", "SM", "SR", "TE", "TP",
)  # fmt: skip
"""Types d'émetteur / de destinataire of the header and trailer (CP = CPAM, MA = MSA, OC = AMC...)."""
STATES = ("P", "R", "D", " ")
"""État paiement of a part: paid, rejected, deferred, not treated."""
RETURN_TYPES = {
    "01": "retours sur prestations transmises en flux électroniques",
    "02": "retours sur prestations en facturation papier",
    "03": "paiements ponctuels ou forfaitaires",
    "04": "rappels sur prestations",
    "05": "retenues",
}
DEBT_NATURES = {
    "ACC": "acompte sur prestations",
    "AFF": "affranchissement",
    "API": "acompte caisse centralisatrice des paiements",
    "APR": "avance sur prestations",
    "IEC": "indu suite à erreur comptable",
    "IND": "indu sur prestations",
    "IPH": "indu sur avance pharmacie",
    "IPI": "créance non gérée par la caisse gestionnaire",
    "ISP": "impayé mandat ou virement solde",
    "ODL": "opposition interne paiement en double",
    "OID": "opposition interne diverse",
    "REL": "reliquat",
    "VMI": "virement ou mandat impayé",
}
"""Nature de la dette of a 250 withholding, as published (a code not listed is kept as it is)."""

HEADER = EntityLayout(
    "000",
    "en-tête",
    (
        _f("record_type", "Type d'enregistrement", 1, 3, "N", "O", "000"),
        _f("emitter_type", "Type d'émetteur", 4, 5, "A", "O", *EMITTER_TYPES),
        _f("emitter", "Numéro d'émetteur", 6, 19, "N", "O"),
        _f("emitter_program", "Programme émetteur", 20, 25, "A", "F"),
        _f("recipient_type", "Type de destinataire", 26, 27, "A", "O", *EMITTER_TYPES),
        _f("recipient", "Numéro de destinataire", 28, 41, "A", "O"),
        _f("recipient_program", "Programme destinataire", 42, 47, "A", "F"),
        _f("application", "Application-type d'échange", 48, 49, "A", "F"),
        _f("file_id", "Identification du fichier", 50, 55, "A", "O"),
        _f("created_on", "Date de création du fichier", 56, 61, "N", "O"),
        _f("norm", "Norme utilisée - référence de l'échange", 62, 65, "A", "O"),
        _f("version", "Version utilisée", 66, 67, "A", "F"),
        _f("compaction", "Compactage", 68, 68, "A", "F"),
        _f("encryption", "Cryptage", 69, 69, "A", "F"),
        _f("currency", "Unité monétaire", 70, 70, "A", "O", "U"),
        _f("flow", "Type de flux", 71, 71, "A", "F", " ", "R", "T", "D"),
        _f("blank", "Blanc", 72, 82, "A", "F"),
        _f("record_length", "Longueur d'enregistrement", 83, 85, "N", "O"),
        _f("password", "Mot de passe", 86, 91, "A", "F"),
        _f("message", "Zone message", 92, 128, "A", "F"),
    ),
)
TRAILER = EntityLayout(
    "999",
    "fin de fichier",
    (
        _f("record_type", "Type d'enregistrement", 1, 3, "N", "O", "999"),
        _f("emitter_type", "Type d'émetteur", 4, 5, "A", "O", *EMITTER_TYPES),
        _f("emitter", "Numéro d'émetteur", 6, 19, "N", "O"),
        _f("emitter_program", "Programme émetteur", 20, 25, "A", "F"),
        _f("recipient_type", "Type de destinataire", 26, 27, "A", "O", *EMITTER_TYPES),
        _f("recipient", "Numéro de destinataire", 28, 41, "A", "O"),
        _f("recipient_program", "Programme destinataire", 42, 47, "A", "F"),
        _f("application", "Application-type d'échange", 48, 49, "A", "F"),
        _f("file_id", "Identification du fichier", 50, 55, "A", "O"),
        _f("records", "Nombre d'enregistrements", 56, 63, "N", "O"),
        _f("flow", "Type de flux", 64, 64, "A", "F", " ", "R", "T", "D"),
        _f("blank", "Blanc", 65, 82, "A", "F"),
        _f("lots", "Nombre de lots", 83, 85, "N", "O"),
        _f("total", "Cumul des montants du fichier", 86, 96, "N", "O"),
        _f("sign", "Signe du montant du fichier", 97, 97, "A", "O"),
        _f("other_total", "Cumul des montants du fichier dans l'autre monnaie", 98, 108, "N", "F"),
        _f("blank2", "Blanc", 109, 128, "A", "F"),
    ),
)

_HEAD = (
    _f("type", "Type d'enregistrement", 1, 3, "N", "O"),
    _f("level", "Niveau de rupture", 4, 5, "N", "O"),
)
ENTITIES: dict[str, EntityLayout] = {
    e.type: replace(e, fields=_HEAD + e.fields)
    for e in (
        _entity(
            "020", "mandataire", 21, _f("number", "Numéro de destinataire de règlement", 6, 20, "N", "O"), level="01"
        ),
        _entity(
            "040",
            "destinataire de règlement",
            21,
            _f("number", "Numéro de destinataire de règlement", 6, 20, "N", "O"),
            level="02",
        ),
        _entity("070", "date comptable", 12, _f("day", "Date de la journée comptable", 6, 11, "N", "O"), level="02"),
        _entity(
            "071",
            "date comptable et référence du virement",
            86,
            _f("day", "Date de la journée comptable ou date d'émission du virement", 6, 11, "N", "O"),
            _f("label1", "Libellé du virement - ligne 1", 12, 43, "A", "O"),
            _f("label2", "Libellé du virement - ligne 2", 44, 75, "A", "F"),
            _f("payer", "Organisme payeur", 76, 85, "A", "F"),
            level="02",
        ),
        _entity(
            "080",
            "lot",
            15,
            _f("day", "Date de constitution du lot", 6, 11, "N", "O"),
            _f("batch", "Numéro de lot", 12, 14, "N", "O"),
        ),
        _entity(
            "081",
            "type de retour",
            22,
            _f("return_type", "Code du type de retour", 6, 7, "N", "O", *RETURN_TYPES),
            _f("place", "Numéro du lieu d'exécution de l'acte", 8, 21, "A", "F"),
            level="02",
        ),
        _entity("100", "facture", 15, _f("invoice", "Numéro de facture", 6, 14, "N", "O")),
        _entity(
            "102",
            "facture",
            40,
            _f("invoice", "N° de facture", 6, 14, "A", "O"),
            _f("invoice_suffix", "Complément au n° de facture", 15, 20, "A", "F"),
            _f("batch", "N° de lot", 21, 23, "A", "F"),
            _f("batch_day", "Date de création du lot", 24, 29, "N", "F"),
            _f("invoice_type", "Type de facture", 30, 30, "A", "O"),
            _f("billed_on", "Date de facturation", 31, 36, "N", "F"),
            _f("amc_processing", "Traitement effectué sur la part AMC", 37, 37, "A", "F"),
            _f("insurance", "Nature d'assurance", 38, 39, "A", "F"),
        ),
        _entity(
            "103",
            "assuré et bénéficiaire",
            152,
            _f("nir", "N° immatriculation", 6, 18, "A", "O"),
            _f("nir_key", "Clé du numéro d'immatriculation", 19, 20, "N", "O"),
            _f("birth_name", "Nom patronymique", 21, 45, "A", "F"),
            _f("used_name", "Nom d'usage", 46, 70, "A", "F"),
            _f("first_name", "Prénom", 71, 85, "A", "F"),
            _f("own_nir", "N° immatriculation individuel", 86, 98, "A", "F"),
            _f("own_nir_key", "Clé du numéro d'immatriculation individuel", 99, 100, "N", "F"),
            _f("birth_date", "Date de naissance", 101, 106, "N", "O"),
            _f("birth_rank", "Rang de naissance", 107, 107, "N", "O"),
            _f("name", "Nom", 108, 132, "A", "F"),
            _f("first_name2", "Prénom", 133, 147, "A", "F"),
            _f("unit", "Unité de gestion de rattachement", 148, 151, "N", "F"),
        ),
        _entity(
            "110",
            "assuré",
            88,
            _f("nir", "Numéro de sécurité sociale", 6, 18, "A", "O"),
            _f("nir_key", "Clé du numéro de sécurité sociale", 19, 20, "N", "O"),
            _f("name_kind", "Nature du nom", 21, 21, "A", "O"),
            _f("name", "Nom du bénéficiaire", 22, 46, "A", "O"),
            _f("blank", "Blanc", 47, 72, "A", "O"),
            _f("first_name", "Prénom du bénéficiaire", 73, 87, "A", "O"),
        ),
        _entity(
            "120",
            "malade",
            57,
            _f("birth_date", "Date de naissance du bénéficiaire", 6, 11, "N", "O"),
            _f("rank", "Rang du bénéficiaire", 12, 12, "A", "O"),
            _f("name", "Nom du malade", 13, 37, "A", "O"),
            _f("first_name", "Prénom du malade", 38, 52, "A", "O"),
            _f("unit", "Unité de gestion de rattachement", 53, 56, "A", "O"),
        ),
        _entity("150", "nature d'assurance", 8, _f("insurance", "Nature de l'assurance", 6, 7, "A", "O")),
        _entity("160", "critère d'archivage", 23, _f("archive", "Numéro d'archivage", 6, 22, "N", "O")),
        _entity(
            "198",
            "part AMO",
            24,
            _f("asked", "Montant AMO demandé", 6, 13, "N", "O"),
            _f("state", "État paiement part AMO", 14, 14, "A", "O", *STATES),
            _f("paid", "Montant AMO payé", 15, 22, "N", "F"),
            _f("sign", "Signe du montant AMO payé", 23, 23, "A", "O"),
        ),
        _entity(
            "199",
            "part AMC",
            49,
            _f("asked", "Montant AMC demandé", 6, 13, "N", "O"),
            _f("state", "État paiement part AMC", 14, 14, "A", "O", *STATES),
            _f("paid", "Montant AMC payé", 15, 22, "N", "F"),
            _f("sign", "Signe du montant AMC payé", 23, 23, "A", "O"),
            _f("amc", "N° AMC destinataire", 24, 33, "N", "O"),
            _f("member", "N° identification AMC de l'adhérent", 34, 48, "A", "F"),
        ),
        _entity(
            "210",
            "acte professionnel",
            118,
            _f("line", "N° de ligne", 6, 7, "N", "O"),
            _f("regime_code", "Code gestion technique pour régime", 8, 9, "N", "O"),
            _f("exemption", "Justification pour exonération", 10, 10, "A", "O"),
            _f("mode", "Mode de traitement", 11, 12, "N", "O"),
            _f("discipline", "Discipline médico-tarifaire", 13, 15, "N", "O"),
            _f("prescribed_on", "Date de prescription d'un acte", 16, 21, "N", "O"),
            _f("care_from", "Date des soins ou date début", 22, 27, "N", "O"),
            _f("care_to", "Date de fin de soins", 28, 33, "N", "O"),
            _f("unit_price", "Prix unitaire d'un acte", 34, 41, "N", "O"),
            _f("base", "Base de remboursement d'un acte", 42, 49, "N", "O"),
            _f("rate", "Taux de remboursement", 50, 52, "N", "O"),
            _f("reimbursed", "Montant remboursé", 53, 60, "N", "O"),
            _f("sign", "Signe de l'acte", 61, 61, "A", "O"),
            _f("nature", "Nature de la prestation", 62, 64, "A", "O"),
            _f("complement", "Code complémentaire à la nature d'acte", 65, 66, "A", "O"),
            _f("quantity", "Quantité d'actes", 67, 69, "N", "O"),
            _f("coefficient", "Coefficient de l'acte", 70, 74, "N", "O"),
            _f("count", "Dénombrement des actes", 75, 77, "N", "O"),
            _f("expense", "Montant de la dépense", 78, 85, "N", "O"),
            _f("expense_kind", "Qualificatif de la dépense", 86, 87, "A", "O"),
            _f("am_rate", "Taux complémentaire Alsace/Moselle", 88, 90, "N", "O"),
            _f("am_amount", "Montant complémentaire Alsace/Moselle", 91, 98, "N", "O"),
            _f("amc_rate", "Taux part complémentaire Mutuelle", 99, 101, "N", "O"),
            _f("amc_amount", "Montant part complémentaire", 102, 109, "N", "O"),
            _f("amc_base", "Base remboursement Mutuelle", 110, 117, "N", "O"),
        ),
        _entity(
            "250",
            "mouvement financier - retenue",
            47,
            _f("line", "Numéro de ligne pour noemie", 6, 7, "N", "O"),
            _f("debt", "Référence de la dette", 8, 17, "A", "O"),
            _f("recorded_on", "Date d'enregistrement de la dette", 18, 23, "N", "O"),
            _f("nature", "Nature de la dette", 24, 26, "A", "O"),
            _f("operation", "Nature des opérations de récupération", 27, 29, "A", "O"),
            _f("amount", "Montant du mouvement financier", 30, 37, "N", "O"),
            _f("sign", "Signe de l'acte", 38, 38, "A", "O"),
            _f("balance", "Montant du solde d'une dette", 39, 46, "N", "F"),
        ),
        _entity(
            "261",
            "paiement ponctuel ou forfaitaire",
            19,
            _f("code", "Code paiement ponctuel ou forfaitaire", 6, 10, "N", "O"),
            _f("amount", "Montant paiement ponctuel ou forfaitaire", 11, 18, "N", "O"),
        ),
        _entity(
            "262",
            "détail paiement ponctuel ou forfaitaire",
            134,
            _f("code", "Codification", 6, 10, "A", "F"),
            _f("label", "Libellé associé", 11, 90, "A", "F"),
            _f("nir", "N° d'immatriculation", 91, 103, "A", "F"),
            _f("nir_key", "Clé du numéro d'immatriculation", 104, 105, "N", "F"),
            _f("birth_date", "Date de naissance", 106, 111, "N", "F"),
            _f("birth_rank", "Rang de naissance", 112, 112, "N", "F"),
            _f("period", "Période", 113, 113, "A", "O"),
            _f("period_from", "Date début période", 114, 119, "N", "F"),
            _f("period_to", "Date fin période", 120, 125, "N", "F"),
            _f("amount", "Montant", 126, 133, "N", "O"),
        ),
        _entity(
            "290",
            "rejet ou signalement",
            98,
            _f("line", "N° de ligne", 6, 7, "N", "O"),
            _f("code", "Codification", 8, 17, "A", "O"),
            _f("label", "Libellé", 18, 97, "A", "O"),
        ),
        _entity(
            "294",
            "ligne rejet",
            153,
            _f("code", "Codification du rejet", 6, 9, "A", "O"),
            _f("label", "Libellé du rejet", 10, 95, "A", "O"),
            _f("reject_level", "Niveau de rejet", 96, 96, "A", "O", "F", "L", "A"),
            _f("part", "Part concernée", 97, 97, "A", "O", "O", "C"),
            _f("nature", "Nature de prestation concernée", 98, 102, "A", "F"),
            _f("care_on", "Date des soins", 103, 108, "N", "F"),
            _f("executant", "N° exécutant", 109, 117, "N", "F"),
            _f("line", "N° de ligne", 118, 120, "N", "F"),
            _f("rank", "Rang du rejet", 121, 122, "N", "F"),
            _f("info", "Information complémentaire sur le rejet", 123, 152, "A", "F"),
        ),
        _entity(
            "295",
            "ligne commentaire",
            135,
            _f("code", "Code commentaire", 6, 6, "A", "F"),
            _f("comment", "Commentaire", 7, 134, "A", "O"),
        ),
        _entity(
            "990",
            "entité de contrôle",
            43,
            _f("ident", "Identification du niveau de rupture", 6, 22, "A", "F"),
            _f("count", "Compteur du niveau inférieur dans la hiérarchie", 23, 30, "N", "O"),
            _f("total", "Cumul des montants de niveau inférieur", 31, 41, "N", "O"),
            _f("sign", "Signe de l'acte", 42, 42, "A", "O"),
            level="99",
        ),
    )
}
"""Every entity of the published description (type, level, delimiter and data zones)."""

REQUIRED_TEXT = {("071", "label1"), ("102", "invoice"), ("290", "code"), ("294", "code"), ("250", "debt")}
"""Text zones comptoir needs filled (the published presence ``O`` of other text zones is not enforced)."""
SIGNS = ("N", "P")
WRITTEN_LEVELS = {"080": "03", "100": "04", "102": "04"}
"""Levels comptoir writes where the description fixes none (the details of an invoice: ``05``)."""

# ---------------------------------------------------------------------------------------------- writing


def _zone(f: Field, value: object, what: str) -> str:
    if value is None or value == "":
        if f.required and f.kind == "N":
            raise ValueError(f"{what}: {f.label!r} is required")
        return " " * f.width
    if isinstance(value, date):
        text = f"{value:%y%m%d}"
    elif f.kind == "N":
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise ValueError(f"{what}: {f.label!r} takes a non-negative integer, not {value!r}")
        text = str(value).rjust(f.width, "0")
    else:
        text = str(value).ljust(f.width)
    if len(text) != f.width:
        raise ValueError(f"{what}: {value!r} does not fit in {f.label!r} ({f.width} characters)")
    return text


def _fill(layout: EntityLayout, values: dict[str, object], size: int) -> str:
    what = f"{layout.type} ({layout.label})"
    zones = [" "] * size
    for f in layout.fields:
        text = _zone(f, values.pop(f.key, None), what)
        zones[f.start - 1 : f.end] = list(text)
    if values:
        raise ValueError(f"{what}: unknown zones {sorted(values)}")
    return "".join(zones)


def format_entity(entity_type: str, **values: object) -> str:
    """One entity as written in the stream, ``@`` included; zones by key (see :data:`ENTITIES`),
    dates as :class:`~datetime.date`, amounts as cents. ``level`` defaults to the published one."""
    layout = ENTITIES[entity_type]
    values.setdefault("level", layout.level or WRITTEN_LEVELS.get(entity_type, "05"))
    values["type"] = entity_type
    return _fill(layout, values, layout.length - 1) + DELIMITER


def format_record(layout: EntityLayout, **values: object) -> str:
    """The 128-byte header (:data:`HEADER`) or trailer (:data:`TRAILER`) record."""
    values["record_type"] = layout.type
    return _fill(layout, values, RECORD)


def write_noemie(
    header: Mapping[str, object],
    entities: Sequence[str],
    *,
    lots: int,
    total_cents: int,
    newline: str = "",
) -> str:
    """A whole file: the header, the data records carrying ``entities``, then the trailer (which takes
    the header's emitter, recipient and file identification, and counts the records)."""
    stream = "".join(entities)
    chunks = [stream[i : i + DATA] for i in range(0, len(stream), DATA)]
    data = [MORE_DATA + c for c in chunks[:-1]]
    if chunks:
        data.append((LAST_DATA + chunks[-1]).ljust(RECORD))
    copied = ("emitter_type", "emitter", "recipient_type", "recipient", "file_id")
    trailer = format_record(
        TRAILER,
        **{k: header[k] for k in copied},
        records=len(data) + 2,
        lots=lots,
        total=abs(total_cents),
        sign="N" if total_cents < 0 else "P",
    )
    records = [format_record(HEADER, **dict(header)), *data, trailer]
    return newline.join(records) + newline


# ---------------------------------------------------------------------------------------------- reading


def decode_text(raw: bytes) -> str:
    """UTF-8 (a BOM is dropped), else Windows-1252: the encodings payers' JSON and banks' files come in."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of the stream: its zones as written (text, unstripped) and where it starts."""

    type: str
    values: dict[str, str]
    offset: int
    """Position in the entity stream (0-based)."""
    line: int
    column: int

    @property
    def layout(self) -> EntityLayout:
        return ENTITIES[self.type]

    @property
    def label(self) -> str:
        return self.layout.label


@dataclass(frozen=True, slots=True)
class NoemieFile:
    """A file read to its entities, every zone checked against the published layout."""

    header: dict[str, str]
    entities: tuple[Entity, ...]
    trailer: dict[str, str]
    records: int
    trailer_line: int


def _records(text: str, source: str) -> list[str]:
    if "\n" in text or "\r" in text:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) == 1 and len(lines[0]) > RECORD and len(lines[0]) % RECORD == 0:
            lines = [lines[0][i : i + RECORD] for i in range(0, len(lines[0]), RECORD)]  # records, then one newline
        for number, line in enumerate(lines, start=1):
            if len(line) != RECORD:
                raise PaymentsFileError(
                    source, number, f"record is {len(line)} characters long: NOEMIE PS records are {RECORD}"
                )
        return lines
    if len(text) % RECORD:
        raise PaymentsFileError(
            source,
            len(text) // RECORD + 1,
            f"the file is {len(text)} characters, not a whole number of {RECORD}-character records"
            f" (the last record has {len(text) % RECORD}: truncated?)",
        )
    return [text[i : i + RECORD] for i in range(0, len(text), RECORD)]


class _Reader:
    """Zones read and errors named: file, line (record), entity type, field and its positions."""

    def __init__(self, source: str) -> None:
        self.source = source

    @staticmethod
    def where(offset: int) -> tuple[int, int]:
        """(line, column) of a position of the entity stream (the stream starts at line 2, column 2)."""
        return 2 + offset // DATA, 2 + offset % DATA

    def fail(self, line: int | None, problem: str) -> PaymentsFileError:
        return PaymentsFileError(self.source, line, problem)

    def zone_error(self, entity: Entity | None, layout: EntityLayout, f: Field, problem: str, line: int) -> Exception:
        if entity is None:  # header or trailer: positions are columns
            return self.fail(
                line, f"{layout.type} {layout.label}, field «{f.label}» (columns {f.start}-{f.end}): {problem}"
            )
        at_line, column = self.where(entity.offset + f.start - 1)
        start = f"column {entity.column}" + (f" of line {entity.line}" if entity.line != at_line else "")
        return self.fail(
            at_line,
            f"entity {entity.type} ({entity.label}) starting at {start}, field «{f.label}»"
            f" (entity positions {f.start}-{f.end}, column {column}): {problem}",
        )

    def check(self, entity: Entity | None, layout: EntityLayout, text: str, line: int) -> dict[str, str]:
        values: dict[str, str] = {}
        for f in layout.fields:
            raw = text[f.start - 1 : f.end]
            blank = not raw.strip()
            if f.kind == "N" and not (blank and not f.required) and not (raw.isascii() and raw.isdigit()):
                optional = "" if f.required else " (or blank)"
                raise self.zone_error(entity, layout, f, f"must be {f.width} digits{optional}, not {raw!r}", line)
            if f.codes and raw not in f.codes and not (blank and not f.required):
                known = ", ".join(repr(c.strip() or " ") for c in f.codes)
                raise self.zone_error(
                    entity, layout, f, f"{raw.strip() or raw!r} is not a published value ({known})", line
                )
            values[f.key] = raw
        return values

    # typed zones of an entity

    def text(self, e: Entity, key: str) -> str:
        value = e.values[key].strip()
        if not value and (e.type, key) in REQUIRED_TEXT:
            raise self.zone_error(e, e.layout, e.layout.field(key), "is blank", e.line)
        return value

    def number(self, e: Entity, key: str) -> int:
        raw = e.values[key]
        return int(raw) if raw.strip() else 0

    def day(self, e: Entity | None, layout: EntityLayout, values: dict[str, str], key: str, line: int) -> date | None:
        raw = values[key]
        if not raw.strip():
            return None
        try:
            year = int(raw[:2])
            return date(2000 + year if year < 70 else 1900 + year, int(raw[2:4]), int(raw[4:6]))
        except ValueError:
            f = layout.field(key)
            raise self.zone_error(e, layout, f, f"is not a date AAMMJJ: {raw!r}", line) from None

    def date_of(self, e: Entity, key: str) -> date:
        found = self.day(e, e.layout, e.values, key, e.line)
        if found is None:
            raise self.zone_error(e, e.layout, e.layout.field(key), "is blank", e.line)
        return found

    def signed(
        self, e: Entity | None, layout: EntityLayout, values: dict[str, str], amount: str, sign: str, line: int
    ) -> int:
        raw = values[amount]
        cents = int(raw) if raw.strip() else 0
        mark = values[sign]
        if mark not in SIGNS and not (mark == " " and cents == 0):
            problem = f"must be N (negative) or P (positive), not {mark!r}"
            raise self.zone_error(e, layout, layout.field(sign), problem, line)
        return -cents if mark == "N" else cents

    def amount(self, e: Entity, amount: str = "amount", sign: str = "sign") -> int:
        return self.signed(e, e.layout, e.values, amount, sign, e.line)


def read_noemie(text: str, source: str) -> NoemieFile:
    """The records and entities of a NOEMIE PS file, every zone checked against the published layout
    (the hierarchy and the control totals are :func:`parse_noemie`'s)."""
    reader = _Reader(source)
    if not text:
        raise reader.fail(None, "empty file: a NOEMIE PS file starts with a 000 header record")
    records = _records(text, source)
    if not records[0].startswith("000"):
        raise reader.fail(1, f"the first record must be the 000 header, not {records[0][:3]!r}")
    header = reader.check(None, HEADER, records[0], 1)
    if header["record_length"] != f"{RECORD:03d}":
        f = HEADER.field("record_length")
        raise reader.zone_error(None, HEADER, f, f"must be {RECORD}, not {header['record_length']!r}", 1)
    reader.day(None, HEADER, header, "created_on", 1)
    last = len(records)
    if last < 2 or not records[-1].startswith("999"):
        raise reader.fail(last, f"the last record must be the 999 trailer, not {records[-1][:3]!r} (file truncated?)")
    trailer = reader.check(None, TRAILER, records[-1], last)
    reader.signed(None, TRAILER, trailer, "total", "sign", last)
    stream_parts: list[str] = []
    ended = False
    for number, record in enumerate(records[1:-1], start=2):
        if ended:
            raise reader.fail(
                number, "a record after the last data record (position 1 = '1'): only the 999 trailer may follow it"
            )
        if record[0] == LAST_DATA:
            ended = True
            body = record[1:].rstrip(" ")
            if not body.endswith(DELIMITER):
                raise reader.fail(number, "the last data record does not end with a whole entity ('@' then spaces)")
            stream_parts.append(body)
        else:
            stream_parts.append(record[1:])
    if len(records) > 2 and not ended:
        raise reader.fail(last, "no data record is marked last ('1' in position 1) before the 999 trailer")
    stream = "".join(stream_parts)
    entities: list[Entity] = []
    pos = 0
    while pos < len(stream):
        line, column = reader.where(pos)
        kind = stream[pos : pos + 3]
        layout = ENTITIES.get(kind)
        if layout is None:
            known = ", ".join(ENTITIES)
            raise reader.fail(line, f"unknown entity type {kind!r} at column {column} (NOEMIE PS entities: {known})")
        end = pos + layout.length
        body = stream[pos:end]
        if len(body) < layout.length:
            raise reader.fail(
                line,
                f"entity {kind} ({layout.label}) at column {column} is cut: the stream ends {len(body)} characters"
                f" into it, the entity has {layout.length}",
            )
        if body[-1] != DELIMITER:
            at_line, at_column = reader.where(end - 1)
            raise reader.fail(
                at_line,
                f"entity {kind} ({layout.label}) starting at column {column}"
                + (f" of line {line}" if at_line != line else "")
                + f": no end-of-entity '@' at its position {layout.length} (column {at_column}, found {body[-1]!r}):"
                f" the entity is not the {layout.length} characters the layout publishes",
            )
        entity = Entity(kind, {}, pos, line, column)
        values = reader.check(entity, layout, body, line)
        entity.values.update(values)
        if layout.level is not None and values["level"] != layout.level:
            f = layout.field("level")
            raise reader.zone_error(
                entity, layout, f, f"is {values['level']!r}, the published level is {layout.level}", line
            )
        entities.append(entity)
        pos = end
    return NoemieFile(header, tuple(entities), trailer, len(records), last)


# ---------------------------------------------------------------------------------------------- meaning

GROUPS = {"020": 1, "040": 2, "070": 3, "071": 3, "081": 4, "080": 5, "100": 6, "102": 6}
"""Entities that open a level of the hierarchy, by rank (an entity closes the open ones of its rank or below)."""
PARENTS: dict[str, tuple[str, ...]] = {
    "020": (),
    "040": ("020",),
    "070": ("040",),
    "071": ("040",),
    "081": ("070", "071"),
    "080": ("081",),
    "100": ("080", "081"),
    "102": ("080", "081"),
}
AT_TOP = ("020", "040")
INVOICE_DETAILS = ("103", "110", "120", "150", "160", "198", "199", "210", "294")
RETURN_DETAILS = ("250", "261", "262")
LOOSE = ("290", "295")
BREAKS = ("020", "040", "070", "071", "081", "080")
"""The levels a 990 closes."""
PAYMENTS = ("070", "071")
INVOICES = ("100", "102")


def _euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d} €"


@dataclass(slots=True)
class _Node:
    entity: Entity
    children: int = 0
    amount: int = 0
    batch: str = ""
    parts: list[Entity] = field(default_factory=list)
    rejections: list[Entity] = field(default_factory=list)
    notices: list[Entity] = field(default_factory=list)


@dataclass(slots=True)
class _Payment:
    remittance_id: str
    payer: str
    payer_name: str
    paid_on: date
    reference: str
    entity: Entity
    lines: list[RemittanceLine] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)


class _Meaning:
    """The hierarchy walked, the 990 and 999 controls checked, the remittances built."""

    def __init__(self, file: NoemieFile, source: str) -> None:
        self.file = file
        self.source = source
        self.reader = _Reader(source)
        self.stack: list[_Node] = []
        self.payment: _Payment | None = None
        self.found: dict[str, _Payment] = {}
        self.total = 0
        self.without_payment = 0
        header = file.header
        self.header_payer = f"{header['emitter_type']}{header['emitter'].lstrip('0') or '0'}"

    def fail(self, entity: Entity, problem: str) -> PaymentsFileError:
        return self.reader.fail(
            entity.line, f"entity {entity.type} ({entity.label}) at column {entity.column}: {problem}"
        )

    def run(self) -> list[Remittance]:
        for e in self.file.entities:
            if e.type == "990":
                self.control(e)
            elif e.type in GROUPS:
                self.open(e)
            elif e.type in INVOICE_DETAILS:
                self.invoice_detail(e)
            elif e.type in RETURN_DETAILS:
                self.return_detail(e)
            else:
                if not self.stack:
                    raise self.fail(e, "outside any level (it follows a 040, 071, 081 or 102)")
                self.attach(e)
                if e.type == "290" and self.stack[-1].entity.type in INVOICES:
                    self.stack[-1].notices.append(e)
        while self.stack:
            self.pop()
        self.check_trailer()
        return [
            Remittance(
                remittance_id=p.remittance_id,
                payer=p.payer,
                payer_name=p.payer_name,
                paid_on=p.paid_on,
                payment_reference=p.reference,
                lines=tuple(p.lines),
                source=self.source,
                adjustments=tuple(p.adjustments),
            )
            for p in self.found.values()
            if p.lines or p.adjustments
        ]

    # structure

    def attach(self, e: Entity) -> None:
        if self.stack:
            self.stack[-1].children += 1

    def add(self, cents: int) -> None:
        for node in self.stack:
            node.amount += cents
        self.total += cents

    def open(self, e: Entity) -> None:
        rank = GROUPS[e.type]
        while self.stack and GROUPS[self.stack[-1].entity.type] >= rank:
            self.pop()
        parent = self.stack[-1].entity if self.stack else None
        allowed = PARENTS[e.type]
        if (parent is None and e.type not in AT_TOP) or (parent is not None and parent.type not in allowed):
            under = f"under a {parent.type} ({parent.label})" if parent else "with no level open"
            wanted = " or ".join(f"{t} ({ENTITIES[t].label})" for t in allowed)
            raise self.fail(e, f"found {under}: it belongs under a {wanted}")
        self.attach(e)
        node = _Node(e)
        if e.type in PAYMENTS:
            self.open_payment(e)
        elif e.type in INVOICES:
            lot = next((n.entity for n in reversed(self.stack) if n.entity.type == "080"), None)
            if lot is not None:
                node.batch = str(int(lot.values["batch"]))
            elif e.type == "102":
                own = e.values["batch"].strip()
                node.batch = (own.lstrip("0") or "0") if own.isdigit() else own
        self.stack.append(node)

    def pop(self) -> None:
        node = self.stack.pop()
        if node.entity.type in INVOICES:
            self.close_invoice(node)
        elif node.entity.type in PAYMENTS:
            self.close_payment()

    def invoice_detail(self, e: Entity) -> None:
        if not self.stack or self.stack[-1].entity.type not in INVOICES:
            raise self.fail(e, "outside any invoice (102): it follows the invoice it belongs to")
        invoice = self.stack[-1]
        self.attach(e)
        if e.type in ("198", "199"):
            invoice.parts.append(e)
            self.add(self.reader.amount(e, "paid"))
        elif e.type == "294":
            invoice.rejections.append(e)

    def return_detail(self, e: Entity) -> None:
        while self.stack and GROUPS[self.stack[-1].entity.type] > GROUPS["081"]:
            self.pop()
        if not self.stack or self.stack[-1].entity.type != "081":
            raise self.fail(e, "outside any type de retour (081): it belongs to a return of a payment (071)")
        self.attach(e)
        payment = self.current_payment(e)
        where = f"{self.source}:{e.line}"
        if e.type == "250":
            amount = self.reader.amount(e)
            nature = self.reader.text(e, "nature")
            balance = e.values["balance"]
            payment.adjustments.append(
                Adjustment(
                    remittance_id=payment.remittance_id,
                    kind=AdjustmentKind.WITHHOLDING,
                    amount_cents=amount,
                    reference=self.reader.text(e, "debt"),
                    nature=nature,
                    operation=self.reader.text(e, "operation"),
                    label=f"Retenue : {DEBT_NATURES.get(nature, nature)}",
                    recorded_on=self.reader.date_of(e, "recorded_on"),
                    balance_cents=int(balance) if balance.strip() else None,
                    source=where,
                )
            )
            self.add(amount)
        elif e.type == "261":
            amount = self.reader.number(e, "amount")
            code = self.reader.text(e, "code")
            payment.adjustments.append(
                Adjustment(
                    remittance_id=payment.remittance_id,
                    kind=AdjustmentKind.LUMP_SUM,
                    amount_cents=amount,
                    reference=code,
                    label=f"Paiement ponctuel ou forfaitaire {code}",
                    source=where,
                )
            )
            self.add(amount)

    def control(self, e: Entity) -> None:
        while self.stack and self.stack[-1].entity.type not in BREAKS:
            self.pop()
        if not self.stack:
            raise self.fail(e, "a control entity with no level open to close")
        node = self.stack[-1]
        closed = node.entity
        what = f"the {closed.type} ({closed.label}) of line {closed.line}"
        layout = e.layout
        count = self.reader.number(e, "count")
        if count != node.children:
            problem = f"says {count}, {what} has {node.children} entities directly under it"
            raise self.reader.zone_error(e, layout, layout.field("count"), problem, e.line)
        total = self.reader.amount(e, "total")
        if total != node.amount:
            problem = f"says {_euros(total)}, the amounts within {what} add up to {_euros(node.amount)}"
            raise self.reader.zone_error(e, layout, layout.field("total"), problem, e.line)
        self.pop()

    def check_trailer(self) -> None:
        header, trailer, line = self.file.header, self.file.trailer, self.file.trailer_line

        def fail(key: str, problem: str) -> Exception:
            return self.reader.zone_error(None, TRAILER, TRAILER.field(key), problem, line)

        for key in ("emitter_type", "emitter", "recipient_type", "recipient", "file_id"):
            if trailer[key] != header[key]:
                raise fail(key, f"is {trailer[key].strip()!r}, the header says {header[key].strip()!r}")
        if int(trailer["records"]) != self.file.records:
            raise fail("records", f"says {int(trailer['records'])}, the file has {self.file.records} records")
        lots = sum(1 for e in self.file.entities if e.type == "080")
        if int(trailer["lots"]) != lots:
            raise fail("lots", f"says {int(trailer['lots'])}, the file has {lots} lots (080)")
        total = self.reader.signed(None, TRAILER, trailer, "total", "sign", line)
        if total != self.total:
            raise fail("total", f"says {_euros(total)}, the amounts of the file add up to {_euros(self.total)}")

    # remittances

    def open_payment(self, e: Entity) -> None:
        day = self.reader.date_of(e, "day")
        if e.type == "071":
            reference = self.reader.text(e, "label1")
            payer = self.reader.text(e, "payer") or self.header_payer
            name = self.reader.text(e, "label2") or payer
            rid = f"{payer}:{reference}"
        else:
            self.without_payment += 1
            reference, payer = "", self.header_payer
            name = payer
            file_id = self.file.header["file_id"].strip()
            rid = f"{payer}:REJ-{file_id}-{day:%Y%m%d}-{self.without_payment}"
        known = self.found.get(rid)
        if known is not None and known.paid_on != day:
            raise self.fail(
                e,
                f"payment {reference!r} of {payer} is dated {day} here and {known.paid_on} at line {known.entity.line}",
            )
        self.payment = known or _Payment(rid, payer, name, day, reference, e)
        self.found[rid] = self.payment

    def close_payment(self) -> None:
        self.payment = None

    def current_payment(self, e: Entity) -> _Payment:
        if self.payment is None:  # cannot happen: an 081 is always under a 070/071
            raise self.fail(e, "outside any payment (071) or return without payment (070)")
        return self.payment

    def close_invoice(self, node: _Node) -> None:
        inv = node.entity
        payment = self.current_payment(inv)
        number = inv.values["invoice"].strip()
        if not number.isdigit():
            problem = f"is not a claim number (digits): {number!r}"
            raise self.reader.zone_error(inv, inv.layout, inv.layout.field("invoice"), problem, inv.line)
        claim = int(number)
        for e in node.parts:
            part = Part.AMO if e.type == "198" else Part.AMC
            state = e.values["state"]
            asked = self.reader.number(e, "asked")
            paid = self.reader.amount(e, "paid")
            paid_zone = e.layout.field("paid")
            if state in ("D", " ") and paid:
                meaning = "deferred (D)" if state == "D" else "not treated (blank)"
                raise self.reader.zone_error(e, e.layout, paid_zone, f"an amount paid on a part {meaning}", e.line)
            if state in ("D", " "):
                continue  # nothing paid nor refused yet: the part stays expected
            if state == "R" and paid:
                raise self.reader.zone_error(e, e.layout, paid_zone, "an amount paid on a rejected part (R)", e.line)
            payer_code = str(int(e.values["amc"])) if part is Part.AMC else payment.payer
            if paid < 0:
                payment.adjustments.append(
                    Adjustment(
                        remittance_id=payment.remittance_id,
                        kind=AdjustmentKind.CORRECTION,
                        amount_cents=paid,
                        reference=str(claim),
                        nature=part.value,
                        label=f"Facture {claim} : part {part.value} reprise",
                        source=f"{self.source}:{e.line}",
                    )
                )
                continue
            if state == "R":
                status = LineStatus.REJECTED
            else:
                status = LineStatus.PAID if paid >= asked else LineStatus.PARTIAL if paid else LineStatus.REJECTED
            code = reason = action = ""
            if status is not LineStatus.PAID:
                why = self.reasons(node, part)
                if why:
                    code = self.reader.text(why[0], "code")
                    labels = list(dict.fromkeys(self.reader.text(w, "label") for w in why))
                    advice = advice_for(code, "; ".join(t for t in labels if t))
                    reason, action = advice.reason, advice.action
            payment.lines.append(
                RemittanceLine(
                    remittance_id=payment.remittance_id,
                    claim_number=claim,
                    part=part,
                    paid_cents=paid,
                    status=status,
                    billed_cents=asked,
                    batch_number=node.batch,
                    payer_code=payer_code,
                    reason_code=code,
                    reason=reason,
                    action=action,
                    source=f"{self.source}:{e.line}",
                )
            )

    @staticmethod
    def reasons(node: _Node, part: Part) -> list[Entity]:
        """The 294 lines of the part (``C`` for the AMC part, else ``O``: compulsory, or both), else the
        invoice's 290 rejections."""
        compulsory = [r for r in node.rejections if r.values["part"] == "O"]
        if part is Part.AMC:
            own = [r for r in node.rejections if r.values["part"] == "C"]
            return own or compulsory or node.notices
        return compulsory or node.notices


def parse_noemie(text: str, source: str) -> list[Remittance]:
    """Every remittance of one NOEMIE PS file (see the module docstring for the layout)."""
    return _Meaning(read_noemie(text, source), source).run()


# ---------------------------------------------------------------------------------------------- sandbox JSON


def parse_sandbox_remittances(remittances: Sequence[Any], source: str = "sandbox") -> list[Remittance]:
    """The sandbox's ``GET /claims/remittances`` answer (its ``remittances`` list, as
    :meth:`sync.teleservices_http.HttpTeleservices.remittances` returns it)."""
    result = []
    for index, item in enumerate(remittances, start=1):
        where = f"remittance #{index}"
        if not isinstance(item, Mapping):
            raise PaymentsFileError(source, None, f"{where} is not a JSON object")
        rid_raw = _json_str(item, "remittance_id", source, where)
        where = f"remittance #{index} ({rid_raw})"
        payer = _json_str(item, "payer", source, where)
        reference = _json_str(item, "payment_reference", source, where)
        try:
            paid_on = date.fromisoformat(_json_str(item, "paid_on", source, where))
        except ValueError:
            raise PaymentsFileError(source, None, f"{where}: paid_on is not a date YYYY-MM-DD") from None
        claims = item.get("claims")
        if not isinstance(claims, list):
            raise PaymentsFileError(source, None, f"{where}: 'claims' must be a list")
        rid = f"{payer}:{reference}"
        part = Part.AMO if payer == "AMO" else Part.AMC
        lines = []
        for n, claim in enumerate(claims, start=1):
            at = f"{where}, claim #{n}"
            if not isinstance(claim, Mapping):
                raise PaymentsFileError(source, None, f"{at} is not a JSON object")
            number_text = _json_str(claim, "claim_number", source, at)
            if not number_text.isdigit():
                raise PaymentsFileError(source, None, f"{at}: claim_number must be digits, not {number_text!r}")
            paid = claim.get("paid_cents")
            if not isinstance(paid, int) or isinstance(paid, bool) or paid < 0:
                raise PaymentsFileError(source, None, f"{at}: paid_cents must be a non-negative integer of cents")
            status_text = claim.get("status")
            if status_text not in ("paid", "rejected"):
                raise PaymentsFileError(source, None, f"{at}: status must be 'paid' or 'rejected', not {status_text!r}")
            reason = action = ""
            if status_text == "rejected":
                advice = advice_for("", str(claim.get("reason") or ""), str(claim.get("action") or ""))
                reason, action = advice.reason, advice.action
            lines.append(
                RemittanceLine(
                    remittance_id=rid,
                    claim_number=int(number_text),
                    part=part,
                    paid_cents=paid,
                    status=LineStatus.PAID if status_text == "paid" else LineStatus.REJECTED,
                    batch_number=str(item.get("batch_number") or ""),
                    payer_code="" if part is Part.AMO else payer,
                    reason=reason,
                    action=action,
                    source=f"{source}:{rid_raw}",
                )
            )
        total = item.get("total_paid_cents")
        if isinstance(total, int) and total != sum(line.paid_cents for line in lines):
            raise PaymentsFileError(source, None, f"{where}: total_paid_cents {total} ≠ the sum of its claims")
        result.append(Remittance(rid, payer, payer, paid_on, reference, tuple(lines), f"{source}:{rid_raw}"))
    return result


def _json_str(item: Mapping[str, Any], name: str, source: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise PaymentsFileError(source, None, f"{where}: {name!r} is missing or not a string")
    return value


def parse_remittance_file(path: Path) -> list[Remittance]:
    """One file: ``.json`` is the sandbox's answer (a list, or ``{"remittances": [...]}``), anything else
    a NOEMIE PS file (bytes read as ISO-8859-1, one character per byte)."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PaymentsFileError(source, None, f"cannot read the file: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(decode_text(raw))
        except json.JSONDecodeError as exc:
            raise PaymentsFileError(source, exc.lineno, f"not valid JSON: {exc.msg}") from None
        if isinstance(data, Mapping):
            data = data.get("remittances")
        if not isinstance(data, list):
            raise PaymentsFileError(source, None, "expected a list of remittances or {'remittances': [...]}")
        return parse_sandbox_remittances(data, source)
    return parse_noemie(raw.decode(ENCODING), source)


def merge_remittances(found: Iterable[Remittance]) -> list[Remittance]:
    """One remittance per id: lines of a payment spread over several files (or batches) are put together;
    the same line (or adjustment) read twice (the same file imported again, or copied) counts once."""
    merged: dict[str, Remittance] = {}
    for remittance in found:
        existing = merged.get(remittance.remittance_id)
        if existing is None:
            merged[remittance.remittance_id] = replace(
                remittance,
                lines=_unique(remittance.lines, _line_identity),
                adjustments=_unique(remittance.adjustments, _adjustment_identity),
            )
            continue
        if existing.paid_on != remittance.paid_on:
            raise PaymentsFileError(
                remittance.source,
                None,
                f"payment {remittance.payment_reference!r} of {remittance.payer} is dated {remittance.paid_on}"
                f" here and {existing.paid_on} in {existing.source}",
            )
        merged[remittance.remittance_id] = replace(
            existing,
            lines=_unique(existing.lines + remittance.lines, _line_identity),
            adjustments=_unique(existing.adjustments + remittance.adjustments, _adjustment_identity),
        )
    return sorted(merged.values(), key=lambda r: (r.paid_on, r.remittance_id))


def _line_identity(line: RemittanceLine) -> tuple[object, ...]:
    return (line.claim_number, line.part, line.paid_cents, line.billed_cents, line.status, line.reason_code)


def _adjustment_identity(a: Adjustment) -> tuple[object, ...]:
    return (a.kind, a.amount_cents, a.reference, a.nature, a.operation, a.recorded_on, a.balance_cents)


_T = TypeVar("_T")


def _unique(items: Sequence[_T], identity: Callable[[_T], tuple[object, ...]]) -> tuple[_T, ...]:
    seen: set[tuple[object, ...]] = set()
    kept: list[_T] = []
    for item in items:
        key = identity(item)
        if key in seen:
            continue
        seen.add(key)
        kept.append(item)
    return tuple(kept)


def load_remittances(directory: Path) -> list[Remittance]:
    """Every remittance file of a directory (not hidden, not recursive), merged by payment."""
    if not directory.is_dir():
        raise PaymentsFileError(str(directory), None, "not a directory of remittance files")
    found: list[Remittance] = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            found.extend(parse_remittance_file(path))
    return merge_remittances(found)
