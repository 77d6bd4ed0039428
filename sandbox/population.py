"""The sandbox's test population: fictitious people, their cards, rights, apCV tokens and prescriptions.

Every identity is invented and registered under the INS **test** OID (1.2.250.1.213.1.4.10); NIR keys
are computed with :func:`appliance.codes.nir.nir_key`. The sandbox server (:mod:`sandbox.server`)
answers from these constants, and the tests and the scenario runner pick people by key.

A *case* groups the people sharing a card (holder first, then spouse and children as beneficiaries);
``person(key)`` accepts a person key or a case key (then it returns the case's card holder). Ranks are
the card's *rang gémellaire*: 1 for everyone except twins, who share a birth date and get 1 and 2.
Every beneficiary carries their own NIR (children included), so ``ApcvContext.ins`` keys never collide.

All cases behave as documented on :data:`REFERENCE_DAY` (2026-06-15): AMO rights run 2025–2029, current
mutuelle memberships 2026–2027 (``durand``: 2026 only, as on its sample attestation).

===================  =====================================================================================
case key             what it exercises
===================  =====================================================================================
martin-family        one card, four beneficiaries: holder Jean, spouse Sophie (birth name BERNARD, Bordeaux),
                     children Léa and Hugo; shared mutuelle 77777777 (100 %); Jean's Levothyrox is a renewal
                     prescription (2 renewals), Léa's a paediatric one
twins                mother Nadia PETIT holding the card; twin boys Lucas (rank 1) and Noah (rank 2) born the
                     same day: INSi by card tells them apart by rank, by traits by first name
corsica              Antoine SANTONI born in Ajaccio (2A004): NIR with 2A (key computed with 2A→19);
                     a 100 % product (tamoxifen) with 5 renewals
ald                  Marc ROSSI born in Bastia (2B033), ALD: prescription with three ALD lines (diabetes)
                     and one line that is not; his DP lists his monthly metformin from a Bastia pharmacy
                     (two in the last four months, an older gliclazide)
c2s                  Aminata DIALLO and her son Moussa, complémentaire santé solidaire, no mutuelle
expired-amc          Claire LEFEBVRE: mutuelle 66666666 period ended 2025-12-31 → IDB refuses ("droits
                     mutuelle expirés"), DLD returns renewed rights 2026-01-01..2027-12-31 with a new
                     accreditation
amc-terminated       Thomas GARNIER: mutuelle ended 2025-06-30 and not renewed → IDB and DLD both refuse
insi-none            Anna KOWALSKI: INSi finds nobody (outcome 01, by card or traits); no apCV token
insi-two             Jean DUBOIS (Paris) and his homonym ``insi-two-homonym`` (Marseille), same birth date:
                     traits without birth place → 02 with two identities; with the place → 00; by card → 02
traits-differ        Élodie LEROUX on the card, "LE ROUX / ELODIE MARIE" in the INS register: INSi 00 with
                     traits that differ from the card, for the pharmacist to confirm; her INS history holds
                     the matricule she had until her birth place was corrected (Quimper, 29232, until 2019)
provisional          Youssef EL AMRANI: card NIR is provisional (starts with 7); INSi returns his definitive
                     matricule (starts with 1), which differs from the card NIR
durand               Marie-Claire DURAND of :mod:`sandbox.samples`: the sample apCV token, the sample
                     ePrescription EP7K2Q-9XWM-4TDA-LR8C (Doliprane, the sample box) and the sample mutuelle
                     attestation (88888888 / 0012345678); ePrescription EP5WRG-2PAT-8DOB-4MIX is written
                     for Paul DURAND born 11/02/1948, not her (the pharmacist must decide); her Dossier
                     Pharmaceutique lists three dispensations of the last four months in Lyon and Bordeaux
                     and two older ones in Paris (:data:`DP_HISTORIES`)
le-goff              Paul LE GOFF of :mod:`sandbox.samples` (born abroad, 99350), agricultural regime (MSA)
arl-rejected         Julie MOREAU moved from Paris to Toulouse: her carte Vitale still names her former fund
                     (CPAM 751), the register (ADRi) her current one (311). A claim addressed to the fund of
                     her card gets its batch a **negative** ARL ("NIR inconnu de l'organisme destinataire");
                     read again from ADRi and sent again, it is accepted
payment-rejected     Louis FAURE: batches are acknowledged, but the remittance rejects his claims with a
                     reason and an advised action
===================  =====================================================================================

Dossier Pharmaceutique: :data:`DP_HISTORIES` (person key → what other pharmacies dispensed to them,
newest first) is what the sandbox DP answers, with what was fed to it since it started; a consult
names a day (``since``, four months back by default), so the older entries only show to a longer one.
``martin-jean`` has his Levothyrox there too; the other cases have an empty DP.

Also exported: :data:`APCV_TOKENS` (case key → token; ``"expired"`` → an expired context of the
Martin family), :data:`PRESCRIPTIONS` (id → :class:`~appliance.domain.Prescription`),
:func:`box_payload` / :func:`box_payloads` (GS1 DataMatrix of the products, GTIN = ``0`` + CIP13),
:data:`EXPIRED_BOX`, and the INSi / rights look-ups the server uses.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from appliance.codes.ins import InsOid
from appliance.codes.nir import nir_key
from appliance.domain import (
    AmoRights,
    Beneficiary,
    DpEntry,
    Ins,
    InsiOutcome,
    InsiResult,
    PastIns,
    PrescribedFor,
    Prescription,
    PrescriptionLine,
    Traits,
)
from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
from sandbox.samples import gs1_box

TEST_OID = InsOid.TEST.value
REFERENCE_DAY = date(2026, 6, 15)
"""A day on which every case behaves as the table above says."""

AMO_FROM = date(2025, 1, 1)
AMO_TO = date(2029, 12, 31)


@dataclass(frozen=True, slots=True)
class AmcMembership:
    """A mutuelle contract as the payer's IDB/DLD service knows it (shared by a card's beneficiaries)."""

    amc_number: str
    member_number: str
    valid_from: date
    valid_to: date
    coverage_pct: int
    conventions: tuple[str, ...] = ("SP",)
    renewed_to: date | None = None
    """DLD renews an ended period up to this day; None: not renewed, DLD refuses too."""


@dataclass(frozen=True, slots=True)
class Person:
    key: str
    case: str
    beneficiary: Beneficiary
    """What the card (or apCV) says."""
    ins: Ins | None
    """What the INS register says; None when INSi cannot find the person."""
    amo: AmoRights
    amc: AmcMembership | None = None
    insi_several: bool = False
    """INSi answers 02 (several identities) to a card search for this person."""
    claim_outcome: str = "paid"
    """What happens to their claims: "paid", "arl-negative" or "payment-rejected"."""
    card_fund: str | None = None
    """The AMO fund their carte Vitale still names when it is out of date (None: the register's)."""
    ins_history: tuple[PastIns, ...] = ()
    """Former matricules INSi lists with their identity (INSHISTO)."""

    @property
    def card_amo(self) -> AmoRights:
        """The AMO rights as their carte Vitale carries them (the register's, unless the card is out of date)."""
        return self.amo if self.card_fund is None else replace(self.amo, fund=self.card_fund)


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    summary: str
    members: tuple[str, ...]
    """Person keys; the first one is the card holder."""


def _nir(sex: str, born: date, place: str, order: int, *, first: str | None = None) -> str:
    body = f"{first or ('1' if sex == 'M' else '2')}{born:%y%m}{place}{order:03d}"
    return body + nir_key(body)


_PEOPLE: list[Person] = []
_CASES: list[Case] = []


def _add(
    key: str,
    case: str,
    *,
    sex: str,
    birth_name: str,
    first_names: str,
    born: date,
    place: str,
    order: int,
    holder: Person | None = None,
    rank: int = 1,
    regime: str = "01",
    fund: str = "751",
    amo_to: date = AMO_TO,
    ald: bool = False,
    c2s: bool = False,
    amc: AmcMembership | None = None,
    in_insi: bool = True,
    ins_traits: Traits | None = None,
    ins_matricule: str | None = None,
    nir_first: str | None = None,
    insi_several: bool = False,
    claim_outcome: str = "paid",
    card_fund: str | None = None,
    ins_history: tuple[PastIns, ...] = (),
) -> Person:
    traits = Traits(birth_name=birth_name, first_names=first_names, sex=sex, birth_date=born, birth_place=place)
    nir = _nir(sex, born, place, order, first=nir_first)
    beneficiary = Beneficiary(nir=nir, rank=rank, traits=traits, holder_nir=holder.beneficiary.nir if holder else nir)
    ins = Ins(matricule=ins_matricule or nir, oid=TEST_OID, traits=ins_traits or traits) if in_insi else None
    amo = AmoRights(nir=nir, regime=regime, fund=fund, valid_from=AMO_FROM, valid_to=amo_to, ald=ald, c2s=c2s)
    person = Person(key, case, beneficiary, ins, amo, amc, insi_several, claim_outcome, card_fund, ins_history)
    _PEOPLE.append(person)
    return person


def _case(key: str, summary: str, *members: Person) -> None:
    _CASES.append(Case(key, summary, tuple(m.key for m in members)))


# --- martin-family: one card, four beneficiaries
_martin_amc = AmcMembership("77777777", "MA0004512", date(2026, 1, 1), date(2027, 12, 31), 100, ("SP",))
_jean = _add(
    "martin-jean",
    "martin-family",
    sex="M",
    birth_name="MARTIN",
    first_names="JEAN PIERRE",
    born=date(1978, 4, 12),
    place="69123",
    order=412,
    fund="691",
    amc=_martin_amc,
)
_sophie = _add(
    "martin-sophie",
    "martin-family",
    sex="F",
    birth_name="BERNARD",
    first_names="SOPHIE ANNE",
    born=date(1980, 9, 30),
    place="33063",
    order=87,
    holder=_jean,
    fund="691",
    amc=_martin_amc,
)
_lea = _add(
    "martin-lea",
    "martin-family",
    sex="F",
    birth_name="MARTIN",
    first_names="LEA",
    born=date(2012, 2, 14),
    place="69123",
    order=233,
    holder=_jean,
    fund="691",
    amc=_martin_amc,
)
_hugo = _add(
    "martin-hugo",
    "martin-family",
    sex="M",
    birth_name="MARTIN",
    first_names="HUGO LOUIS",
    born=date(2016, 7, 1),
    place="69123",
    order=19,
    holder=_jean,
    fund="691",
    amc=_martin_amc,
)
_case("martin-family", "family card: holder, spouse, two children; shared mutuelle", _jean, _sophie, _lea, _hugo)

# --- twins
_twins_amc = AmcMembership("44444444", "PT-88120", date(2026, 1, 1), date(2027, 12, 31), 80, ("SP", "ISANTE"))
_nadia = _add(
    "petit-nadia",
    "twins",
    sex="F",
    birth_name="PETIT",
    first_names="NADIA",
    born=date(1988, 3, 5),
    place="59350",
    order=140,
    fund="595",
    amc=_twins_amc,
)
_lucas = _add(
    "petit-lucas",
    "twins",
    sex="M",
    birth_name="PETIT",
    first_names="LUCAS",
    born=date(2020, 5, 20),
    place="59350",
    order=611,
    holder=_nadia,
    rank=1,
    fund="595",
    amc=_twins_amc,
)
_noah = _add(
    "petit-noah",
    "twins",
    sex="M",
    birth_name="PETIT",
    first_names="NOAH",
    born=date(2020, 5, 20),
    place="59350",
    order=612,
    holder=_nadia,
    rank=2,
    fund="595",
    amc=_twins_amc,
)
_case("twins", "twins on their mother's card: same birth date, ranks 1 and 2", _nadia, _lucas, _noah)

# --- Corsica, ALD
_santoni = _add(
    "corsica",
    "corsica",
    sex="M",
    birth_name="SANTONI",
    first_names="ANTOINE",
    born=date(1965, 11, 8),
    place="2A004",
    order=31,
    fund="2A1",
    amc=AmcMembership("33333333", "SA-0651108", date(2026, 1, 1), date(2027, 12, 31), 100),
)
_case("corsica", "born in Ajaccio (2A): Corsican NIR", _santoni)
_rossi = _add(
    "ald",
    "ald",
    sex="M",
    birth_name="ROSSI",
    first_names="MARC",
    born=date(1958, 2, 27),
    place="2B033",
    order=58,
    fund="2B1",
    ald=True,
    amc=AmcMembership("55555555", "RS5802", date(2026, 1, 1), date(2027, 12, 31), 100),
)
_case("ald", "ALD patient born in Bastia (2B)", _rossi)

# --- C2S
_aminata = _add(
    "c2s",
    "c2s",
    sex="F",
    birth_name="DIALLO",
    first_names="AMINATA",
    born=date(1995, 6, 23),
    place="93066",
    order=402,
    fund="931",
    c2s=True,
)
_moussa = _add(
    "c2s-child",
    "c2s",
    sex="M",
    birth_name="DIALLO",
    first_names="MOUSSA",
    born=date(2019, 10, 10),
    place="93066",
    order=77,
    holder=_aminata,
    fund="931",
    c2s=True,
)
_case("c2s", "complémentaire santé solidaire, mother and child", _aminata, _moussa)

# --- mutuelle rights ended
_lefebvre = _add(
    "expired-amc",
    "expired-amc",
    sex="F",
    birth_name="LEFEBVRE",
    first_names="CLAIRE",
    born=date(1985, 10, 3),
    place="44109",
    order=256,
    fund="441",
    amc=AmcMembership(
        "66666666",
        "LF20240077",
        date(2025, 1, 1),
        date(2025, 12, 31),
        100,
        ("SP",),
        renewed_to=date(2027, 12, 31),
    ),
)
_case("expired-amc", "mutuelle period ended: IDB refuses, DLD renews", _lefebvre)
_garnier = _add(
    "amc-terminated",
    "amc-terminated",
    sex="M",
    birth_name="GARNIER",
    first_names="THOMAS",
    born=date(1990, 7, 19),
    place="35238",
    order=118,
    fund="351",
    amc=AmcMembership("66666666", "GT19900719", date(2025, 1, 1), date(2025, 6, 30), 70),
)
_case("amc-terminated", "mutuelle ended and not renewed: IDB and DLD refuse", _garnier)

# --- INSi outcomes
_kowalski = _add(
    "insi-none",
    "insi-none",
    sex="F",
    birth_name="KOWALSKI",
    first_names="ANNA",
    born=date(1992, 12, 1),
    place="99122",
    order=45,
    in_insi=False,
)
_case("insi-none", "INSi finds nobody (01)", _kowalski)
_dubois = _add(
    "insi-two",
    "insi-two",
    sex="M",
    birth_name="DUBOIS",
    first_names="JEAN",
    born=date(1970, 1, 15),
    place="75056",
    order=321,
    insi_several=True,
)
_dubois2 = _add(
    "insi-two-homonym",
    "insi-two",
    sex="M",
    birth_name="DUBOIS",
    first_names="JEAN",
    born=date(1970, 1, 15),
    place="13055",
    order=94,
    fund="131",
    insi_several=True,
)
_case("insi-two", "two homonyms born the same day: INSi 02 without the birth place", _dubois, _dubois2)
_leroux = _add(
    "traits-differ",
    "traits-differ",
    sex="F",
    birth_name="LEROUX",
    first_names="ELODIE",
    born=date(1987, 1, 20),
    place="29019",
    order=63,
    fund="291",
    ins_traits=Traits("LE ROUX", "ELODIE MARIE", "F", date(1987, 1, 20), "29019"),
    ins_history=(PastIns(_nir("F", date(1987, 1, 20), "29232", 63), TEST_OID, valid_to=date(2019, 2, 28)),),
)
_case("traits-differ", "INS traits differ from the card's", _leroux)
_el_amrani = _add(
    "provisional",
    "provisional",
    sex="M",
    birth_name="EL AMRANI",
    first_names="YOUSSEF",
    born=date(1985, 3, 11),
    place="99350",
    order=17,
    nir_first="7",
    ins_matricule="1850399350017" + nir_key("1850399350017"),
)
_case("provisional", "provisional NIR (7…) on the card, definitive matricule from INSi", _el_amrani)

# --- the people of sandbox.samples
_durand = _add(
    "durand",
    "durand",
    sex="F",
    birth_name="DURAND",
    first_names="MARIE CLAIRE",
    born=date(1982, 8, 19),
    place="75056",
    order=123,
    amc=AmcMembership(
        "88888888",
        "0012345678",
        date(2026, 1, 1),
        date(2026, 12, 31),
        100,
        ("SP", "ISANTE"),
        renewed_to=date(2027, 12, 31),
    ),
)
_case("durand", "the sample codes' patient", _durand)
_le_goff = _add(
    "le-goff",
    "le-goff",
    sex="M",
    birth_name="LE GOFF",
    first_names="PAUL",
    born=date(1975, 5, 2),
    place="99350",
    order=42,
    regime="02",
    fund="291",
)
_case("le-goff", "the sample INS of Paul Le Goff, agricultural regime", _le_goff)

# --- claims outcomes
_moreau = _add(
    "arl-rejected",
    "arl-rejected",
    sex="F",
    birth_name="MOREAU",
    first_names="JULIE",
    born=date(1999, 4, 4),
    place="31555",
    order=208,
    fund="311",
    claim_outcome="arl-negative",
    card_fund="751",
)
_case("arl-rejected", "her card names her former fund: a claim sent to it gets a negative ARL", _moreau)
_faure = _add(
    "payment-rejected",
    "payment-rejected",
    sex="M",
    birth_name="FAURE",
    first_names="LOUIS",
    born=date(1949, 12, 24),
    place="67482",
    order=333,
    fund="671",
    amc=AmcMembership("22222222", "FL491224", date(2026, 1, 1), date(2027, 12, 31), 60),
    claim_outcome="payment-rejected",
)
_case("payment-rejected", "claims acknowledged, then rejected in the remittance", _faure)


PEOPLE: dict[str, Person] = {p.key: p for p in _PEOPLE}
CASES: dict[str, Case] = {c.key: c for c in _CASES}


# --- apCV tokens
def apcv_token(context: str) -> bytes:
    """The sandbox apCV QR payload for a context name."""
    return b"APCV01:" + base64.urlsafe_b64encode(f"sandbox-context-{context}".encode()).rstrip(b"=")


SAMPLE_APCV_TOKEN = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
"""The token of :func:`sandbox.samples.basic_samples` ("sandbox-context-0001"): Marie Durand."""

APCV_TOKENS: dict[str, bytes] = {
    **{key: apcv_token(key) for key in CASES if key not in ("insi-none", "durand")},
    "durand": SAMPLE_APCV_TOKEN,
    "expired": apcv_token("martin-family-expired"),
}
"""Case key → token whose context returns that case's beneficiaries; ``"expired"`` is refused."""

APCV_CONTEXTS: dict[bytes, tuple[str, bool]] = {
    token: ("martin-family", True) if key == "expired" else (key, False) for key, token in APCV_TOKENS.items()
}
"""Token → (case key, expired)."""


# --- products and boxes
DOLIPRANE_1000 = "3400930000120"
DOLIPRANE_500 = "3400930000212"
PARACETAMOL_1G = "3400930000489"
EFFERALGAN_PED = "3400930000519"
AMOXICILLINE_1G = "3400930000649"
CLAMOXYL_SUSP = "3400930000779"
AUGMENTIN = "3400930000830"
LEVOTHYROX_75 = "3400930000960"
KARDEGIC_75 = "3400930001028"
METFORMINE_850 = "3400930001189"
DIAMICRON_60 = "3400930001257"
ATORVASTATINE_20 = "3400930001318"
AMLODIPINE_5 = "3400930001448"
RAMIPRIL_5 = "3400930001578"
VENTOLINE = "3400930001769"
OMEPRAZOLE_20 = "3400930001929"
SPASFON_LYOC = "3400930002087"
UVEDOSE = "3400930002278"
CETIRIZINE_10 = "3400930002339"
DESLORATADINE_5 = "3400930002469"
TRAMADOL_50 = "3400930002599"
TAMOXIFENE_20 = "3400930002780"
HUMEX = "3400930002940"

PRODUCTS_PATH: Path = DEFAULT_PRODUCTS_PATH


def products() -> ProductTable:
    """The sandbox product table (read from :data:`PRODUCTS_PATH` at each call)."""
    return ProductTable.load(PRODUCTS_PATH)


def box_payload(cip13: str, *, expiry: str = "281231", lot: str | None = None, serial: str | None = None) -> bytes:
    """A medicine box GS1 DataMatrix payload: GTIN ``0`` + CIP13, expiry YYMMDD, lot, serial."""
    return gs1_box("0" + cip13, expiry, lot or f"L{cip13[-5:]}", serial or f"SN{cip13[-6:]}0001")


def box_payloads(*, serial_no: int = 1) -> dict[str, bytes]:
    """One valid box per product of the table, by CIP13; ``serial_no`` makes distinct serials."""
    return {p.cip13: box_payload(p.cip13, serial=f"SN{p.cip13[-6:]}{serial_no:04d}") for p in products()}


EXPIRED_BOX = box_payload(DOLIPRANE_1000, expiry="250131", lot="EXP01", serial="SNEXPIRED0001")
"""A Doliprane box whose expiry date (2025-01-31) has passed."""


# --- ePrescriptions
_LABELS = {
    DOLIPRANE_1000: "DOLIPRANE 1000 mg cp B/8",
    AMOXICILLINE_1G: "AMOXICILLINE BIOGARAN 1 g cp B/6",
    LEVOTHYROX_75: "LEVOTHYROX 75 µg cp B/30",
    CLAMOXYL_SUSP: "CLAMOXYL 250 mg/5 ml pdre susp buv fl 60 ml",
    EFFERALGAN_PED: "EFFERALGAN PEDIATRIQUE 3 % sol buv fl 90 ml",
    METFORMINE_850: "METFORMINE ARROW 850 mg cp B/90",
    DIAMICRON_60: "DIAMICRON 60 mg cp LM B/90",
    ATORVASTATINE_20: "ATORVASTATINE TEVA 20 mg cp B/90",
    VENTOLINE: "VENTOLINE 100 µg/dose susp inhal fl 200 doses",
    DESLORATADINE_5: "DESLORATADINE ZENTIVA 5 mg cp B/30",
    UVEDOSE: "UVEDOSE 100 000 UI sol buv amp B/1",
    OMEPRAZOLE_20: "OMEPRAZOLE MYLAN 20 mg gél B/28",
    SPASFON_LYOC: "SPASFON LYOC 80 mg lyoph oral B/10",
    TRAMADOL_50: "TRAMADOL ARROW 50 mg gél B/30",
    CETIRIZINE_10: "CETIRIZINE ARROW 10 mg cp B/7",
    KARDEGIC_75: "KARDEGIC 75 mg pdre sachet B/30",
    RAMIPRIL_5: "RAMIPRIL BIOGARAN 5 mg cp B/90",
    AMLODIPINE_5: "AMLODIPINE SANDOZ 5 mg gél B/90",
    TAMOXIFENE_20: "TAMOXIFENE TEVA 20 mg cp B/30",
    AUGMENTIN: "AUGMENTIN 1 g/125 mg pdre sachet B/8",
}


def _line(no: int, cip13: str, quantity: int = 1, *, ald: bool = False) -> PrescriptionLine:
    return PrescriptionLine(line_no=no, label=_LABELS[cip13], quantity=quantity, cip13=cip13, ald=ald)


def _rx(
    rx_id: str,
    key: str,
    prescriber: str,
    day: date,
    renewals: int,
    *lines: PrescriptionLine,
    written_for: PrescribedFor | None = None,
) -> Prescription:
    """A prescription for case ``key``: written for that person (first first name, as prescribers do)
    unless ``written_for`` says whom the prescriber wrote instead."""
    traits = PEOPLE[key].beneficiary.traits
    patient = written_for or PrescribedFor(traits.birth_name, traits.first_names.split()[0], traits.birth_date)
    return Prescription(
        rx_id,
        prescriber,
        day,
        renewals,
        tuple(lines),
        patient_nir=PEOPLE[key].beneficiary.nir,
        patient=patient,
        prescriber_mailbox=PRESCRIBER_MAILBOXES.get(prescriber),
    )


_DR_VIDAL = "Dr Hélène VIDAL, médecin généraliste (RPPS 10001234567)"
_DR_NGUYEN = "Dr Minh NGUYEN, pédiatre (RPPS 10002345678)"
_DR_COLONNA = "Dr Pierre COLONNA, endocrinologue (RPPS 10003456789)"

PRESCRIBER_MAILBOXES: dict[str, str] = {
    _DR_VIDAL: "helene.vidal@medecin.mssante.fr",
    _DR_NGUYEN: "minh.nguyen@ancien-cabinet.mssante.fr",
}
"""The prescribers' MSSanté addresses their ePrescriptions carry (Dr COLONNA has none)."""
CLOSED_MAILBOXES: frozenset[str] = frozenset({"minh.nguyen@ancien-cabinet.mssante.fr"})
"""Addresses the sandbox's MSSanté operator refuses (550 5.1.1): Dr NGUYEN's mailbox was closed."""

SAMPLE_PRESCRIPTION_ID = "EP7K2Q-9XWM-4TDA-LR8C"
MISMATCHED_PRESCRIPTION_ID = "EP5WRG-2PAT-8DOB-4MIX"
"""Written by the prescriber for another DURAND (first name and birth date differ from the case's)."""

PRESCRIPTIONS: dict[str, Prescription] = {
    rx.prescription_id: rx
    for rx in (
        _rx(
            SAMPLE_PRESCRIPTION_ID,
            "durand",
            _DR_VIDAL,
            date(2026, 6, 10),
            0,
            _line(1, DOLIPRANE_1000, 2),
            _line(2, AMOXICILLINE_1G, 1),
        ),
        _rx("EP3MRT-8HJQ-2WZC-91KD", "martin-jean", _DR_VIDAL, date(2026, 5, 2), 2, _line(1, LEVOTHYROX_75, 1)),
        _rx(
            "EP5LEA-4PED-7CLX-0A2B",
            "martin-lea",
            _DR_NGUYEN,
            date(2026, 6, 12),
            0,
            _line(1, CLAMOXYL_SUSP, 1),
            _line(2, EFFERALGAN_PED, 1),
        ),
        _rx(
            "EP9ALD-2MRC-5RSS-3B8E",
            "ald",
            _DR_COLONNA,
            date(2026, 6, 1),
            2,
            _line(1, METFORMINE_850, 1, ald=True),
            _line(2, DIAMICRON_60, 1, ald=True),
            _line(3, ATORVASTATINE_20, 1, ald=True),
            _line(4, DOLIPRANE_1000, 1),
        ),
        _rx(
            "EP2C2S-7AMD-6DLL-4XQP",
            "c2s",
            _DR_VIDAL,
            date(2026, 6, 8),
            0,
            _line(1, VENTOLINE, 1),
            _line(2, DESLORATADINE_5, 1),
        ),
        _rx("EP4TWN-1LCS-8PTT-5NOA", "petit-lucas", _DR_NGUYEN, date(2026, 6, 3), 0, _line(1, UVEDOSE, 1)),
        _rx("EP4TWN-2NOA-8PTT-5LCS", "petit-noah", _DR_NGUYEN, date(2026, 6, 3), 0, _line(1, UVEDOSE, 1)),
        _rx(
            "EP6AMC-3CLF-9LFB-2EXP",
            "expired-amc",
            _DR_VIDAL,
            date(2026, 6, 11),
            0,
            _line(1, OMEPRAZOLE_20, 1),
            _line(2, SPASFON_LYOC, 1),
        ),
        _rx(
            "EP8DCI-5PCM-1DBS-7DCI",
            "insi-two",
            _DR_VIDAL,
            date(2026, 6, 9),
            0,
            PrescriptionLine(1, "PARACETAMOL 1 g cp (DCI)", 2),
            _line(2, TRAMADOL_50, 1),
        ),
        _rx(
            "EP1ARL-6MRJ-3NEG-8ARL",
            "arl-rejected",
            _DR_VIDAL,
            date(2026, 6, 7),
            0,
            _line(1, CETIRIZINE_10, 1),
        ),
        _rx(
            "EP0NOE-4FRL-2REJ-6PAY",
            "payment-rejected",
            _DR_VIDAL,
            date(2026, 6, 2),
            1,
            _line(1, KARDEGIC_75, 1),
            _line(2, RAMIPRIL_5, 1),
            _line(3, AMLODIPINE_5, 1),
        ),
        _rx("EP2COR-7SNT-4TMX-1AJA", "corsica", _DR_COLONNA, date(2026, 5, 28), 5, _line(1, TAMOXIFENE_20, 1)),
        _rx("EP7PRV-3ELA-5AUG-9YEL", "provisional", _DR_VIDAL, date(2026, 6, 13), 0, _line(1, AUGMENTIN, 1)),
        _rx(
            MISMATCHED_PRESCRIPTION_ID,
            "durand",
            _DR_VIDAL,
            date(2026, 6, 14),
            0,
            _line(1, DOLIPRANE_1000, 1),
            written_for=PrescribedFor("DURAND", "PAUL", date(1948, 2, 11)),
        ),
    )
}
"""Prescription id → prescription (sandbox id pattern ``EPXXXX-XXXX-XXXX-XXXX``)."""

CLAIM_REJECTIONS: dict[str, tuple[str, str]] = {
    "arl-negative": (
        "NIR du bénéficiaire inconnu de l'organisme destinataire",
        "Vérifier l'identité et les droits (ADRi) du patient, corriger la FSE, la renvoyer dans un autre lot",
    ),
    "payment-rejected": (
        "Date de prescription incohérente avec la date d'exécution",
        "Corriger la date de prescription puis refacturer la FSE",
    ),
}
"""Claim outcome → (reason, advised action) reported by the ARL or the remittance."""


# --- Dossier Pharmaceutique: dispensations in other pharmacies
_LYON = "Pharmacie de la Gare, Lyon"
_BORDEAUX = "Pharmacie des Chartrons, Bordeaux"
_PARIS = "Grande Pharmacie de la Nation, Paris"
_BASTIA = "Pharmacie du Vieux-Port, Bastia"


def _dp(day: date, cip13: str, quantity: int, pharmacy: str) -> DpEntry:
    return DpEntry(day, _LABELS[cip13], quantity, cip13, pharmacy)


DP_HISTORIES: dict[str, tuple[DpEntry, ...]] = {
    "durand": (
        _dp(date(2026, 5, 22), CETIRIZINE_10, 1, _LYON),
        _dp(date(2026, 4, 9), OMEPRAZOLE_20, 2, _BORDEAUX),
        _dp(date(2026, 3, 2), DOLIPRANE_1000, 2, _LYON),
        _dp(date(2025, 12, 10), AMOXICILLINE_1G, 1, _PARIS),
        _dp(date(2025, 9, 18), VENTOLINE, 1, _PARIS),
    ),
    "ald": (
        _dp(date(2026, 5, 4), METFORMINE_850, 1, _BASTIA),
        _dp(date(2026, 4, 3), METFORMINE_850, 1, _BASTIA),
        _dp(date(2025, 11, 20), DIAMICRON_60, 1, _BASTIA),
    ),
    "martin-jean": (
        _dp(date(2026, 5, 2), LEVOTHYROX_75, 1, "Pharmacie Bellecour, Lyon"),
        _dp(date(2026, 1, 5), LEVOTHYROX_75, 1, "Pharmacie Bellecour, Lyon"),
    ),
}
"""Person key → the dispensations their Dossier Pharmaceutique lists from other pharmacies, newest
first: within the last four months of :data:`REFERENCE_DAY` and older (``since`` tells them apart)."""


def _norm(text: str) -> str:
    """Upper-case letters only, accents, spaces and hyphens removed: how names are compared."""
    stripped = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in stripped.upper() if c.isalpha())


def _first_name(first_names: str) -> str:
    parts = first_names.replace("-", " ").split()
    return _norm(parts[0]) if parts else ""


def _result(people: list[Person]) -> InsiResult:
    identities = [p.ins for p in people if p.ins is not None]
    if not identities:
        return InsiResult(InsiOutcome.NONE)
    if len(identities) == 1:
        return InsiResult(InsiOutcome.FOUND, (identities[0],), people[0].ins_history)
    return InsiResult(InsiOutcome.SEVERAL, tuple(identities))


@dataclass(frozen=True)
class Population:
    """Everything the sandbox services answer from; :data:`POPULATION` is the default one."""

    people: Mapping[str, Person]
    cases: Mapping[str, Case]
    apcv_contexts: Mapping[bytes, tuple[str, bool]]
    prescriptions: Mapping[str, Prescription]
    dp_histories: Mapping[str, tuple[DpEntry, ...]] = field(default_factory=dict)
    """Person key → their Dossier Pharmaceutique's dispensations in other pharmacies."""

    def person(self, key: str) -> Person:
        """A person by person key, or a case's card holder by case key."""
        if key in self.people:
            return self.people[key]
        if key in self.cases:
            return self.people[self.cases[key].members[0]]
        raise KeyError(f"no person or case {key!r} in the sandbox population")

    def members(self, case_key: str) -> tuple[Person, ...]:
        return tuple(self.people[k] for k in self.cases[case_key].members)

    def insi_by_card(self, holder_nir: str, birth_date: date, rank: int) -> InsiResult:
        """rechercherInsAvecCarteVitale: the card holder's NIR, the beneficiary's birth date and rank."""
        found = [
            p
            for p in self.people.values()
            if p.beneficiary.holder_nir == holder_nir
            and p.beneficiary.traits.birth_date == birth_date
            and p.beneficiary.rank == rank
            and p.ins is not None
        ]
        if found and found[0].insi_several:
            case = found[0].case
            group = [p.ins for p in self.people.values() if p.case == case and p.insi_several and p.ins]
            return InsiResult(InsiOutcome.SEVERAL, tuple(group))
        return _result(found)

    def insi_by_traits(self, traits: Traits) -> InsiResult:
        """rechercherInsAvecTraitsIdentite: birth name, first first name, sex, birth date, optional place."""
        matches = []
        for p in self.people.values():
            if p.ins is None:
                continue
            t = p.ins.traits
            if (
                _norm(t.birth_name) == _norm(traits.birth_name)
                and _first_name(t.first_names) == _first_name(traits.first_names)
                and t.sex == traits.sex
                and t.birth_date == traits.birth_date
                and (not traits.birth_place or t.birth_place == traits.birth_place)
            ):
                matches.append(p)
        return _result(matches)

    def find_beneficiary(
        self, nir: str, holder_nir: str = "", birth_date: date | None = None, rank: int = 1
    ) -> Person | None:
        """A person by their own NIR, else by card data (holder NIR, birth date, rank)."""
        for p in self.people.values():
            if p.beneficiary.nir == nir:
                return p
        for p in self.people.values():
            b = p.beneficiary
            if b.holder_nir == (holder_nir or nir) and b.traits.birth_date == birth_date and b.rank == rank:
                return p
        return None

    def find_by_ins(self, matricule: str) -> Person | None:
        return next((p for p in self.people.values() if p.ins and p.ins.matricule == matricule), None)

    def memberships(self, amc_number: str, member_number: str) -> list[Person]:
        """The people covered by one mutuelle contract."""
        return [
            p
            for p in self.people.values()
            if p.amc and p.amc.amc_number == amc_number and p.amc.member_number == member_number
        ]


POPULATION = Population(PEOPLE, CASES, APCV_CONTEXTS, PRESCRIPTIONS, DP_HISTORIES)
"""The population documented above."""

person = POPULATION.person
members = POPULATION.members
