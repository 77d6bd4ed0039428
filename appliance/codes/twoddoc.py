"""2D-DOC (ANTS): signed French documents in a DataMatrix, C40 text mode, versions 02, 03 and 04.

Layout, after the ANTS "Spécifications techniques des codes à barres 2D-Doc" (v3.x), C40 format::

    header   DC | version(2) | CA id(4) | certificate id(4) | issue date(4) | signature date(4)
             | document type(2) [| perimeter(2) for 03 and 04] [| country(2) for 04]
             22 characters for 02, 24 for 03, 26 for 04. Dates are hexadecimal days since
             2000-01-01; FFFF means "no date".
    message  data identifier(2) + value, repeated. A fixed-length value has no terminator; a
             variable-length value ends with <GS> (0x1D) unless it is at its maximum length or is the
             last one before <US>. <RS> (0x1E) in place of <GS> marks a value the issuer truncated.
    <US>     (0x1F) ends the message zone.
    signature  Base32 (RFC 4648, no padding) of the raw ECDSA r||s, computed over every byte before
             <US> (header + message): P-256/SHA-256, P-384/SHA-384 or P-521/SHA-512, told by the key.
    annex    optional (introduced by version 04): <GS> after the signature, then data fields in the
             message format. The annex is NOT signed; its values are kept apart (``TwoDDoc.annex``),
             never mixed with the signed data nor reported by ``to_fields()``.

The meaning and lengths of the data identifiers are those of the ANTS perimeter ``01`` (the only one
published); for another perimeter every identifier is read as a variable-length field, as are
identifiers missing from :data:`DATA_IDENTIFIERS`.

:func:`parse_2d_doc` raises :class:`~appliance.codes.errors.TwoDDocError` (and nothing else) when the
bytes cannot be read as a 2D-DOC; a document that reads well but whose signature does not verify is
returned with ``signature_status`` ``invalid`` or ``unknown-key`` and ``problems`` saying why.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.codes.errors import TwoDDocError
from appliance.codes.trust import TrustList

GS = "\x1d"
"""Group separator: ends a variable-length value; after the signature, opens the annex."""
RS = "\x1e"
"""Record separator: ends a variable-length value that the issuer truncated."""
US = "\x1f"
"""Unit separator: ends the message zone; the signature follows."""

MARKER = "DC"
SUPPORTED_VERSIONS: tuple[str, ...] = ("02", "03", "04")
HEADER_LENGTHS: dict[str, int] = {"02": 22, "03": 24, "04": 26}
NO_DATE = "FFFF"
EPOCH = date(2000, 1, 1)
ANTS_PERIMETER = "01"

_PLAUSIBLE_VERSIONS = frozenset({b"01", b"02", b"03", b"04"})
_ALNUM4 = re.compile(r"[A-Z0-9]{4}")
_ALNUM2 = re.compile(r"[A-Z0-9]{2}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_HEX4 = re.compile(r"[0-9A-F]{4}")
_BASE32 = re.compile(r"[A-Z2-7]*")
_BASE32_PAD = {0: 0, 2: 6, 4: 4, 5: 3, 7: 1}
"""Unpadded Base32 length modulo 8 -> padding to add; lengths 1, 3 and 6 (mod 8) cannot occur."""

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class SignatureStatus(StrEnum):
    """What the signature says about the document: exactly one of these."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN_KEY = "unknown-key"


@dataclass(frozen=True, slots=True)
class DataIdentifier:
    """One data identifier of the ANTS perimeter 01: its meaning and the lengths of its value."""

    id: str
    name: str
    min_length: int
    max_length: int | None
    """None when the value has no maximum length."""

    @property
    def fixed(self) -> bool:
        """A fixed-length value (minimum = maximum) is never followed by a terminator."""
        return self.max_length is not None and self.min_length == self.max_length > 0


# Data identifiers of the ANTS perimeter 01, C40 format: id, minimum length, maximum length
# ("-" = none), name (as the specification names the data, in French). Fixed-length = min equals max.
# Source: ANTS "Spécifications techniques des codes à barres 2D-Doc", section "Données" (v3.3.x, the
# definitions table of the data identifiers), cross-checked with the types' tables of its annex 8.
_TABLE = """
01 0 - Identifiant unique du document
02 0 - Catégorie de document
03 0 - Sous-catégorie de document
04 0 - Application de composition
05 0 - Version de l'application de composition
06 6 6 Date de l'association entre le document et le code 2D-Doc
07 6 6 Heure de l'association entre le document et le code 2D-Doc
08 4 4 Date d'expiration du document
09 4 4 Nombre de pages du document
0A 9 9 Éditeur du 2D-Doc
0B 9 9 Intégrateur du 2D-Doc
0C 0 - URL du document
10 0 38 Ligne 1 de l'adresse postale du bénéficiaire de la prestation
11 0 38 Qualité et/ou titre du bénéficiaire de la prestation
12 0 38 Prénom du bénéficiaire de la prestation
13 0 38 Nom du bénéficiaire de la prestation
14 0 38 Ligne 1 de l'adresse postale du destinataire de la facture
15 0 38 Qualité et/ou titre du destinataire de la facture
16 0 38 Prénom du destinataire de la facture
17 0 38 Nom du destinataire de la facture
18 0 - Numéro de la facture
19 0 - Numéro de client
1A 0 - Numéro du contrat
1B 0 - Identifiant du souscripteur du contrat
1C 8 8 Date d'effet du contrat
1D 0 16 Montant TTC de la facture
1E 0 30 Numéro de téléphone du bénéficiaire de la prestation
1F 0 30 Numéro de téléphone du destinataire de la facture
1G 1 1 Présence d'un co-bénéficiaire de la prestation non mentionné dans le code
1H 1 1 Présence d'un co-destinataire de la facture non mentionné dans le code
1I 0 38 Ligne 1 de l'adresse postale du co-bénéficiaire de la prestation
1J 0 38 Qualité et/ou titre du co-bénéficiaire de la prestation
1K 0 38 Prénom du co-bénéficiaire de la prestation
1L 0 38 Nom du co-bénéficiaire de la prestation
1M 0 38 Ligne 1 de l'adresse postale du co-destinataire de la facture
1N 0 38 Qualité et/ou titre du co-destinataire de la facture
1O 0 38 Prénom du co-destinataire de la facture
1P 0 38 Nom du co-destinataire de la facture
20 0 38 Ligne 2 de l'adresse postale du point de service des prestations
21 0 38 Ligne 3 de l'adresse postale du point de service des prestations
22 0 38 Ligne 4 de l'adresse postale du point de service des prestations
23 0 38 Ligne 5 de l'adresse postale du point de service des prestations
24 5 5 Code postal ou code cedex du point de service des prestations
25 0 32 Localité ou libellé cedex du point de service des prestations
26 2 2 Pays du point de service des prestations
27 0 38 Ligne 2 de l'adresse postale du destinataire de la facture
28 0 38 Ligne 3 de l'adresse postale du destinataire de la facture
29 0 38 Ligne 4 de l'adresse postale du destinataire de la facture
2A 0 38 Ligne 5 de l'adresse postale du destinataire de la facture
2B 5 5 Code postal ou code cedex du destinataire de la facture
2C 0 32 Localité ou libellé cedex du destinataire de la facture
2D 2 2 Pays du destinataire de la facture
30 0 140 Qualité, nom et prénom
31 14 38 Code IBAN
32 8 11 Code BIC/SWIFT
33 0 30 Code BBAN
34 2 2 Pays de localisation du compte
35 14 34 Identifiant SEPAmail (QXBAN)
36 4 4 Date de début de période
37 4 4 Date de fin de période
38 0 11 Solde du compte en début de période
39 0 11 Solde du compte en fin de période
40 13 13 Numéro fiscal
41 0 - Revenu fiscal de référence
42 0 - Situation du foyer
43 0 - Nombre de parts
44 13 13 Référence de l'avis d'impôt
45 4 4 Année des revenus
46 0 38 Déclarant 1
47 13 13 Numéro fiscal du déclarant 1
48 0 38 Déclarant 2
49 13 13 Numéro fiscal du déclarant 2
4A 8 8 Date de mise en recouvrement
4B 8 8 Date de la déclaration
4V 0 - Impôt sur le revenu net
4W 0 - Reste à payer
4X 0 - Retenue à la source
4Y 0 - Adresse
50 14 14 SIRET de l'employeur
51 6 6 Nombre d'heures travaillées
52 7 7 Cumul du nombre d'heures travaillées
53 4 4 Début de période
54 4 4 Fin de période
55 8 8 Date de début de contrat
56 4 4 Date de fin de contrat
57 8 8 Date de signature du contrat
58 0 11 Salaire net imposable
59 0 12 Cumul du salaire net imposable
5A 0 11 Salaire brut du mois
5B 0 12 Cumul du salaire brut
5C 0 11 Salaire net
5D 0 38 Ligne 2 de l'adresse postale de l'employeur
5E 0 38 Ligne 3 de l'adresse postale de l'employeur
5F 0 38 Ligne 4 de l'adresse postale de l'employeur
5G 0 38 Ligne 5 de l'adresse postale de l'employeur
5H 5 5 Code postal ou code cedex de l'employeur
5I 0 32 Localité ou libellé cedex de l'employeur
5J 2 2 Pays de l'employeur
5K 0 50 Identifiant cotisant prestations sociales
5L 9 14 Numéro SIRET ou RNA
5M 0 38 Dénomination sociale
5N 21 21 Numéro de dossier d'autorisation de travail
5O 0 38 Nom de l'employeur
5P 0 20 Prénom de l'employeur
5Q 0 38 Nom du déclarant
5R 0 20 Prénom du déclarant
5S 0 40 Fonction du déclarant
5T 1 1 Type de contrat de travail
5U 0 12 Durée du contrat
5V 12 12 Période de déclaration du contrat
5W 2 2 Nature du contrat
5X 0 60 Intitulé du poste
5Y 12 12 Période de rémunération
5Z 0 16 Montant de la rémunération pour la période
60 0 60 Liste des prénoms
61 0 20 Prénom
62 0 38 Nom patronymique
63 0 38 Nom d'usage
64 0 38 Nom d'épouse/époux
65 2 2 Type de pièce d'identité
66 0 20 Numéro de la pièce d'identité
67 2 2 Nationalité
68 1 1 Genre
69 8 8 Date de naissance
6A 0 32 Lieu de naissance
6B 3 3 Département du bureau émetteur
6C 2 2 Pays de naissance
6D 0 60 Nom et prénom du père
6E 0 60 Nom et prénom de la mère
6F 0 90 Zone de lecture automatique (MRZ)
6G 1 38 Nom
6H 1 10 Civilité
6I 2 2 Pays émetteur
6J 1 1 Type de document étranger
6K 19 19 Numéro de la demande de document étranger
6L 8 8 Date de dépôt de la demande
6M 0 40 Catégorie du titre
6N 8 8 Date de début de validité
6O 8 8 Date de fin de validité
6P 0 40 Autorisation
6Q 0 10 Numéro d'étranger
6R 12 12 Numéro de visa
6S 0 38 Ligne 2 de l'adresse postale du domicile
6T 0 38 Ligne 3 de l'adresse postale du domicile
6U 0 38 Ligne 4 de l'adresse postale du domicile
6V 0 38 Ligne 5 de l'adresse postale du domicile
6W 5 5 Code postal ou code cedex du domicile
6X 0 32 Commune du domicile
6Y 2 2 Code pays du domicile
6Z 9 11 Numéro d'étranger de l'autorisation de travail
70 12 12 Date et heure du décès
71 12 12 Date et heure du constat de décès
72 0 38 Nom du défunt
73 0 60 Prénoms du défunt
74 0 38 Nom de jeune fille du défunt
75 8 8 Date de naissance du défunt
76 1 1 Genre du défunt
77 0 45 Commune de décès
78 5 5 Code postal de la commune de décès
79 0 114 Adresse du domicile du défunt
7A 5 5 Code postal du domicile du défunt
7B 0 45 Commune du domicile du défunt
7C 1 1 Obstacle médico-légal
7D 1 1 Mise en bière
7E 1 1 Obstacle aux soins de conservation
7F 1 1 Obstacle aux dons du corps
7G 1 1 Recherche de la cause du décès
7H 2 2 Délai de transport du corps
7I 1 1 Prothèse avec pile
7J 1 1 Retrait de la pile de prothèse
7K 13 13 Code NNC
7L 9 9 Code FINESS de l'organisme agréé
7M 0 64 Identification du médecin
7N 0 128 Lieu de validation du certificat de décès
7O 1 1 Certificat de décès supplémentaire
80 0 38 Nom
81 0 60 Prénoms
82 0 20 Numéro de carte
83 0 40 Organisme de tutelle
84 0 40 Profession
85 17 17 Numéro de permis de chasser
86 12 12 Numéro de licence
8L 0 60 Liste des prénoms du traducteur
8M 0 38 Nom patronymique du traducteur
8N 8 8 Date de délivrance de la traduction
8O 0 50 Identifiant unique de traduction
8P 0 50 Application de composition de la traduction
90 0 38 Identité de l'huissier de justice
91 0 38 Identité ou raison sociale du demandeur
92 0 38 Identité ou raison sociale du destinataire
93 0 38 Identité ou raison sociale du tiers concerné
94 0 38 Intitulé de l'acte
95 0 18 Numéro de l'acte
96 8 8 Date de signature de l'acte
A0 2 2 Pays ayant émis l'immatriculation du véhicule
A1 0 17 Immatriculation du véhicule
A2 0 17 Marque du véhicule
A3 0 17 Nom commercial du véhicule
A4 17 17 Numéro de série du véhicule (VIN)
A5 3 3 Catégorie du véhicule
A6 2 2 Carburant
A7 3 3 Taux d'émission de CO2 du véhicule (g/km)
A8 0 12 Classe environnementale de réception CE
A9 3 3 Classe d'émission polluante
AA 8 8 Date de première immatriculation du véhicule
AB 0 8 Type de lettre
AC 0 19 Numéro de dossier
AD 4 4 Date de l'infraction
AE 4 4 Heure de l'infraction
AF 1 1 Nombre de points retirés lors de l'infraction
AG 1 1 Solde de points
AH 0 30 Numéro de la carte
AI 8 8 Date d'expiration initiale
AJ 13 13 Numéro EVTC
AK 7 7 Numéro de macaron
AL 11 11 Numéro de la carte
AM 0 5 Motif de sur-classement
AN 8 8 Kilométrage
B0 0 60 Liste des prénoms
B1 0 20 Prénom
B2 0 38 Nom patronymique
B3 0 38 Nom d'usage
B4 0 38 Nom d'épouse/époux
B5 2 2 Nationalité
B6 1 1 Genre
B7 8 8 Date de naissance
B8 0 32 Lieu de naissance
B9 2 2 Pays de naissance
BA 1 1 Mention obtenue
BB 0 50 Numéro ou code d'identification de l'étudiant
BC 0 20 Numéro du diplôme
BD 1 1 Niveau du diplôme (classification CEC)
BE 3 3 Crédits ECTS obtenus
BF 3 3 Année universitaire
BG 2 2 Type de diplôme
BH 0 30 Domaine
BI 0 30 Mention
BJ 0 30 Spécialité
BK 14 14 Numéro de l'attestation de versement de la CVEC
C0 1 1 Genre du vendeur
C1 0 38 Nom patronymique du vendeur
C2 0 20 Prénom du vendeur
C3 12 12 Date et heure de la cession
C4 8 8 Date de la signature du vendeur
C5 1 1 Genre de l'acheteur
C6 0 38 Nom patronymique de l'acheteur
C7 0 20 Prénom de l'acheteur
C8 0 38 Ligne 4 de l'adresse postale du domicile de l'acheteur
C9 5 5 Code postal ou code cedex du domicile de l'acheteur
CA 0 45 Commune du domicile de l'acheteur
CB 10 10 Numéro d'enregistrement
CC 12 12 Date et heure d'enregistrement dans le SIV
"""


def _load_table(text: str) -> dict[str, DataIdentifier]:
    table: dict[str, DataIdentifier] = {}
    for line in text.strip().splitlines():
        ident, low, high, name = line.split(" ", 3)
        table[ident] = DataIdentifier(ident, name, int(low), None if high == "-" else int(high))
    return table


DATA_IDENTIFIERS: dict[str, DataIdentifier] = _load_table(_TABLE)
"""The data identifiers of the ANTS perimeter 01 (C40), by identifier."""


def data_identifiers(perimeter: str | None) -> dict[str, DataIdentifier]:
    """The identifier table that applies to a perimeter: perimeter 01 (or none, version 02) has one."""
    return DATA_IDENTIFIERS if perimeter in (None, ANTS_PERIMETER) else {}


@dataclass(frozen=True, slots=True)
class TwoDDocField:
    """One data field: identifier, its name (None when the identifier is not in the table), value."""

    id: str
    name: str | None
    value: str
    truncated: bool = False
    """The issuer truncated the value (it ended with <RS>)."""


@dataclass(frozen=True, slots=True)
class TwoDDoc:
    """A 2D-DOC read from its bytes, with the outcome of its signature check."""

    version: str
    """Two characters from the header: "02", "03" or "04"."""
    ca_id: str
    cert_id: str
    issue_date: date | None
    signature_date: date | None
    doc_type: str
    perimeter: str | None
    """None for version 02."""
    country: str | None
    """None for versions 02 and 03."""
    fields: tuple[TwoDDocField, ...]
    """The signed data fields, in the order of the code."""
    signed_bytes: bytes
    """Header + message: the bytes the signature covers (everything before <US>)."""
    signature: bytes
    """Raw r||s; empty when there is none or it is not Base32."""
    signature_status: SignatureStatus
    problems: tuple[str, ...] = ()
    """Why the signature is not valid; empty when it is."""
    annex: tuple[TwoDDocField, ...] = ()
    """Fields after the signature (version 04 annex): NOT covered by the signature."""

    @property
    def valid(self) -> bool:
        return self.signature_status is SignatureStatus.VALID

    def get(self, field_id: str) -> str | None:
        """The value of a signed field, or None when the code does not hold it."""
        for item in self.fields:
            if item.id == field_id:
                return item.value
        return None

    def to_fields(self) -> dict[str, Any]:
        """JSON-ready summary for the decode command."""
        return {
            "version": self.version,
            "ca_id": self.ca_id,
            "cert_id": self.cert_id,
            "issue_date": self.issue_date.isoformat() if self.issue_date else None,
            "signature_date": self.signature_date.isoformat() if self.signature_date else None,
            "doc_type": self.doc_type,
            "perimeter": self.perimeter,
            "country": self.country,
            "data": {item.id: item.value for item in self.fields},
            "truncated": [item.id for item in self.fields if item.truncated],
            "signature": self.signature_status.value,
        }


def looks_like_2d_doc(data: bytes) -> bool:
    """Cheap check for the classifier: ``DC`` followed by a 2D-DOC version (01 to 04).

    Version 01 is accepted here so that such a code reaches :func:`parse_2d_doc` and gets a clear
    "not supported" message instead of being an unknown code.
    """
    return data[:2] == b"DC" and data[2:4] in _PLAUSIBLE_VERSIONS


@dataclass(frozen=True, slots=True)
class _Header:
    version: str
    ca_id: str
    cert_id: str
    issue_date: date | None
    signature_date: date | None
    doc_type: str
    perimeter: str | None
    country: str | None
    length: int


def parse_2d_doc(data: bytes, trust: TrustList) -> TwoDDoc:
    """Read a C40 2D-DOC (versions 02, 03, 04) and check its signature against ``trust``.

    Raises :class:`TwoDDocError`, and only that, when the bytes are not a well-formed 2D-DOC.
    """
    raw = bytes(data)
    text = _ascii_text(raw)
    header = _parse_header(text)
    table = data_identifiers(header.perimeter)

    unit = text.find(US, header.length)
    if unit == -1:
        message, signature_text, annex_text = text[header.length :], None, None
        signed = raw
    else:
        message = text[header.length : unit]
        signed = raw[:unit]
        tail = text[unit + 1 :]
        group = tail.find(GS)
        signature_text = tail if group == -1 else tail[:group]
        annex_text = None if group == -1 else tail[group + 1 :]

    fields = _parse_fields(message, table, "message")
    annex = _parse_fields(annex_text, table, "annex") if annex_text is not None else ()
    status, problems, signature = _check_signature(signed, signature_text, header, trust)
    return TwoDDoc(
        version=header.version,
        ca_id=header.ca_id,
        cert_id=header.cert_id,
        issue_date=header.issue_date,
        signature_date=header.signature_date,
        doc_type=header.doc_type,
        perimeter=header.perimeter,
        country=header.country,
        fields=fields,
        signed_bytes=signed,
        signature=signature,
        signature_status=status,
        problems=problems,
        annex=annex,
    )


def encode_date(day: date | None) -> str:
    """Four hexadecimal digits (days since 2000-01-01), FFFF for no date."""
    if day is None:
        return NO_DATE
    days = (day - EPOCH).days
    if not 0 <= days < 0xFFFF:
        raise ValueError(f"date {day.isoformat()} cannot be written in a 2D-DOC (2000-01-01 to 2179-06-05)")
    return f"{days:04X}"


def _ascii_text(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TwoDDocError(
            f"2D-DOC holds a byte that is not ASCII text (0x{raw[exc.start]:02X} at position {exc.start})"
        ) from None


def _parse_header(text: str) -> _Header:
    if len(text) < 4:
        raise TwoDDocError(f"2D-DOC is too short to hold a header ({len(text)} characters)")
    if text[:2] != MARKER:
        raise TwoDDocError(f"not a 2D-DOC: it starts with {text[:2]!r}, not 'DC'")
    version = text[2:4]
    if version not in SUPPORTED_VERSIONS:
        raise TwoDDocError(f"2D-DOC version {version!r} is not supported (versions 02, 03 and 04 are)")
    length = HEADER_LENGTHS[version]
    if len(text) < length:
        raise TwoDDocError(f"2D-DOC header is cut short: {len(text)} characters where version {version} needs {length}")
    ca_id = _header_part(text[4:8], _ALNUM4, "CA id", "4 capital letters or digits")
    cert_id = _header_part(text[8:12], _ALNUM4, "certificate id", "4 capital letters or digits")
    issue_date = _decode_date(text[12:16], "issue date")
    signature_date = _decode_date(text[16:20], "signature date")
    doc_type = _header_part(text[20:22], _ALNUM2, "document type", "2 capital letters or digits")
    perimeter = None
    country = None
    if version in ("03", "04"):
        perimeter = _header_part(text[22:24], _ALNUM2, "perimeter", "2 capital letters or digits")
    if version == "04":
        country = _header_part(text[24:26], _COUNTRY, "country", "2 capital letters")
    return _Header(version, ca_id, cert_id, issue_date, signature_date, doc_type, perimeter, country, length)


def _header_part(value: str, pattern: re.Pattern[str], label: str, expected: str) -> str:
    if pattern.fullmatch(value) is None:
        raise TwoDDocError(f"2D-DOC {label} {value!r} is not {expected}")
    return value


def _decode_date(value: str, label: str) -> date | None:
    if _HEX4.fullmatch(value) is None:
        raise TwoDDocError(f"2D-DOC {label} {value!r} is not hexadecimal (4 digits 0-9 A-F)")
    if value == NO_DATE:
        return None
    return EPOCH + timedelta(days=int(value, 16))


def _parse_fields(zone: str, table: dict[str, DataIdentifier], where: str) -> tuple[TwoDDocField, ...]:
    fields: list[TwoDDocField] = []
    seen: set[str] = set()
    pos = 0
    end = len(zone)
    while pos < end:
        ident = zone[pos : pos + 2]
        if len(ident) < 2:
            raise TwoDDocError(f"2D-DOC {where} ends in the middle of a data identifier ({ident!r})")
        if _ALNUM2.fullmatch(ident) is None:
            raise TwoDDocError(
                f"2D-DOC {where}: data identifier {ident!r} (character {pos}) is not 2 capital letters or digits"
            )
        if ident in seen:
            raise TwoDDocError(f"2D-DOC {where}: data identifier {ident} appears twice")
        seen.add(ident)
        spec = table.get(ident)
        label = f"2D-DOC field {ident}" + (f" ({spec.name})" if spec else "")
        start = pos + 2
        truncated = False
        if spec is not None and spec.fixed:
            size = spec.min_length
            value = zone[start : start + size]
            if len(value) < size:
                raise TwoDDocError(f"{label} is cut short: {len(value)} characters where {size} are required")
            if GS in value or RS in value:
                raise TwoDDocError(f"{label} has a separator within its fixed length of {size} characters")
            pos = start + size
        else:
            limit = end
            if spec is not None and spec.max_length is not None:
                limit = min(end, start + spec.max_length)
            stop = start
            while stop < limit and zone[stop] not in (GS, RS):
                stop += 1
            value = zone[start:stop]
            pos = stop
            # A separator ends the value; one after a value at its maximum length is tolerated.
            if pos < end and zone[pos] in (GS, RS):
                truncated = zone[pos] == RS
                pos += 1
            if spec is not None and not truncated and len(value) < spec.min_length:
                raise TwoDDocError(
                    f"{label} is too short: {len(value)} characters where at least {spec.min_length} are required"
                )
        bad = next((char for char in value if not " " <= char <= "~"), None)
        if bad is not None:
            raise TwoDDocError(f"{label} holds a control character (0x{ord(bad):02X})")
        fields.append(TwoDDocField(ident, spec.name if spec else None, value, truncated))
    return tuple(fields)


def _decode_signature(text: str) -> tuple[bytes, str | None]:
    if _BASE32.fullmatch(text) is None:
        odd = sorted({char for char in text if _BASE32.fullmatch(char) is None})
        shown = ", ".join(repr(char) for char in odd[:5])
        return b"", f"signature is not Base32: it holds characters outside A-Z and 2-7 ({shown})"
    padding = _BASE32_PAD.get(len(text) % 8)
    if padding is None:
        return b"", f"signature is not Base32: {len(text)} characters is not a possible unpadded length"
    try:
        raw = base64.b32decode(text + "=" * padding)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded by the checks above
        return b"", f"signature is not Base32: {exc}"
    if base64.b32encode(raw).decode("ascii").rstrip("=") != text:
        # Unused low bits of the last character must be zero, or one signature has many spellings.
        return b"", "signature is not canonical Base32: its last character carries stray bits"
    return raw, None


def _check_signature(
    signed: bytes, text: str | None, header: _Header, trust: TrustList
) -> tuple[SignatureStatus, tuple[str, ...], bytes]:
    if not text:
        return SignatureStatus.INVALID, ("no signature",), b""
    raw, format_problem = _decode_signature(text)
    key = trust.get(header.ca_id, header.cert_id)
    if key is None:
        problems = [f"no public key for certificate {header.ca_id}/{header.cert_id} in the trust list"]
        if format_problem:
            problems.append(format_problem)
        return SignatureStatus.UNKNOWN_KEY, tuple(problems), raw
    if format_problem:
        return SignatureStatus.INVALID, (format_problem,), raw
    hash_type = _HASHES.get(key.curve.name)
    if hash_type is None:
        return SignatureStatus.INVALID, (f"curve {key.curve.name} is not used by 2D-DOC",), raw
    size = (key.curve.key_size + 7) // 8
    if len(raw) != 2 * size:
        curve = _CURVE_NAMES[key.curve.name]
        return (
            SignatureStatus.INVALID,
            (f"signature is {len(raw)} bytes long where a {curve} key needs {2 * size}",),
            raw,
        )
    der = encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))
    try:
        key.verify(der, signed, ec.ECDSA(hash_type()))
    except (InvalidSignature, ValueError):
        return SignatureStatus.INVALID, ("signature does not match the content",), raw
    return SignatureStatus.VALID, (), raw
