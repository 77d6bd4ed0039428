"""The CDA R2 document of a DMP feed: the CI-SIS header and a structured body.

HL7 CDA R2 (``urn:hl7-org:v3``, POCD_HD000040) with the header the ANS CI-SIS asks (volet
structuration minimale des documents de santé): ``realmCode`` FR, ``typeId``, the HL7 France and
CI-SIS conformance ``templateId`` s (then the content model's, VAC-NOTE for the vaccination note),
``id``, ``code`` (LOINC: the XDS typeCode), ``title``, ``effectiveTime``, ``confidentialityCode`` N,
``languageCode`` fr-FR, ``setId`` / ``versionNumber``, ``recordTarget`` with the INS as the patient's
id (its OID as root) and the five INS traits, ``author`` and ``legalAuthenticator`` (the pharmacist,
RPPS-based national id, profession 21, their pharmacy), ``custodian`` (the pharmacy),
``documentationOf/serviceEvent`` (the act, performed in the ``AMBULATOIRE`` setting) and
``componentOf/encompassingEncounter`` (at a ``SA33`` pharmacie d'officine).

The body is structured: one section per subject with its narrative table, and one entry per
product (``substanceAdministration``, the box identified by its GS1 GTIN, with its lot). The patient's
choice of visibility is not in the CDA (its ``confidentialityCode`` stays N, as the CI-SIS asks): it
goes in the XDS metadata (:mod:`appliance.dmp.xds`).

Elements are written in the order of the POCD_MT000040 schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree
from lxml.builder import ElementMaker

from appliance.dmp.model import (
    AMBULATOIRE,
    CONFIDENTIALITY,
    GENDER,
    GTIN_OID,
    HEADER_TEMPLATES,
    LOINC,
    PHARMACIE_OFFICINE,
    PHARMACIEN,
    RPPS_OID,
    STRUCTURE_OID,
    Code,
    DmpDocument,
    Pharmacist,
    Pharmacy,
    Product,
    Template,
)

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TYPE_ID_ROOT = "2.16.840.1.113883.1.3"
TYPE_ID_EXTENSION = "POCD_HD000040"
ACT_CODE = "2.16.840.1.113883.5.4"

_E = ElementMaker(namespace=V3, nsmap={None: V3, "xsi": XSI})

Element = etree._Element


def ts(moment: datetime) -> str:
    """An HL7 TS in UTC with its offset: YYYYMMDDHHMMSS+0000."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def _code(tag: str, code: Code, **extra: str) -> Element:
    el: Element = getattr(_E, tag)(code=code.code, codeSystem=code.system, displayName=code.display, **extra)
    return el


def _template(t: Template) -> Element:
    return _E.templateId(root=t.root) if t.extension is None else _E.templateId(root=t.root, extension=t.extension)


def pharmacist_id(author: Pharmacist, source: str) -> tuple[str, str]:
    """(root, extension) of the pharmacist: national ``8`` + RPPS when their CPS is known, else the
    box's local operator number (the DMP itself wants the national one: see the report of delivery)."""
    if author.rpps:
        return RPPS_OID, "8" + author.rpps
    return f"{source}.1", str(author.operator_id)


def structure_id(pharmacy: Pharmacy) -> tuple[str, str]:
    """(root, extension) of the pharmacy: ``1`` + FINESS under the IDNST OID."""
    return STRUCTURE_OID, "1" + pharmacy.finess


def _person(name: str) -> Element:
    return _E.name(_E.family(name))


def _organization(tag: str, pharmacy: Pharmacy, *more: Element) -> Element:
    root, ext = structure_id(pharmacy)
    el: Element = getattr(_E, tag)(_E.id(root=root, extension=ext), _E.name(pharmacy.name), *more)
    return el


def _record_target(doc: DmpDocument) -> Element:
    ins = doc.patient
    traits = ins.traits
    firsts = traits.first_names.split()
    name = _E.name(
        _E.family(traits.birth_name, qualifier="BR"),
        _E.given(firsts[0] if firsts else traits.first_names),
        _E.given(traits.first_names, qualifier="BR"),
    )
    gender = traits.sex if traits.sex in ("M", "F") else "U"
    patient = _E.patient(
        name,
        _E.administrativeGenderCode(code=gender, codeSystem=GENDER),
        _E.birthTime(value=traits.birth_date.strftime("%Y%m%d")),
    )
    if traits.birth_place:
        patient.append(_E.birthplace(_E.place(_E.addr(_E.county(traits.birth_place)))))
    return _E.recordTarget(_E.patientRole(_E.id(root=ins.oid, extension=ins.matricule), patient))


def _assigned(tag: str, doc: DmpDocument, *, organization: Element | None = None) -> Element:
    root, ext = pharmacist_id(doc.author, doc.ids.source)
    children = [_E.id(root=root, extension=ext), _code("code", PHARMACIEN)]
    children.append(_E.assignedPerson(_person(doc.author.name)))
    if organization is None:
        organization = _organization("representedOrganization", doc.pharmacy)
    children.append(organization)
    el: Element = getattr(_E, tag)(*children)
    return el


def _header(doc: DmpDocument) -> list[Element]:
    kind = doc.kind
    written = ts(doc.written_at)
    custodian_root, custodian_ext = structure_id(doc.pharmacy)
    practice = _organization("representedOrganization", doc.pharmacy, _code("standardIndustryClassCode", AMBULATOIRE))
    return [
        _E.realmCode(code="FR"),
        _E.typeId(root=TYPE_ID_ROOT, extension=TYPE_ID_EXTENSION),
        *(_template(t) for t in (*HEADER_TEMPLATES, *kind.templates)),
        _E.id(root=doc.ids.document),
        _code("code", kind.type_code, codeSystemName="LOINC"),
        _E.title(kind.title),
        _E.effectiveTime(value=written),
        _E.confidentialityCode(code="N", codeSystem=CONFIDENTIALITY, displayName="Normal"),
        _E.languageCode(code="fr-FR"),
        _E.setId(root=doc.ids.set_id),
        _E.versionNumber(value="1"),
        _record_target(doc),
        _E.author(_E.time(value=written), _assigned("assignedAuthor", doc)),
        _E.custodian(
            _E.assignedCustodian(
                _E.representedCustodianOrganization(
                    _E.id(root=custodian_root, extension=custodian_ext), _E.name(doc.pharmacy.name)
                )
            )
        ),
        _E.legalAuthenticator(_E.time(value=written), _E.signatureCode(code="S"), _assigned("assignedEntity", doc)),
        _E.documentationOf(
            _E.serviceEvent(
                _code("code", kind.type_code, codeSystemName="LOINC"),
                _E.effectiveTime(_E.low(value=written), _E.high(value=written)),
                _E.performer(_assigned("assignedEntity", doc, organization=practice), typeCode="PRF"),
                classCode="ACT",
                moodCode="EVN",
            )
        ),
        _E.componentOf(
            _E.encompassingEncounter(
                _E.effectiveTime(_E.low(value=written), _E.high(value=written)),
                _E.location(_E.healthCareFacility(_code("code", PHARMACIE_OFFICINE))),
            )
        ),
    ]


# --- body


def _label(p: Product) -> str:
    return p.label or f"CIP {p.cip13}"


def _products_table(products: tuple[Product, ...], prefix: str, first: str) -> Element:
    rows = [
        _E.tr(
            _E.td(_label(p), ID=f"{prefix}-{i}"),
            _E.td(p.cip13),
            _E.td(p.lot or "—"),
            _E.td(p.expiry or "—"),
            _E.td(p.dispensed_at.astimezone(UTC).strftime("%d/%m/%Y")),
        )
        for i, p in enumerate(products, start=1)
    ]
    head = _E.thead(_E.tr(_E.th(first), _E.th("CIP"), _E.th("Lot"), _E.th("Péremption"), _E.th("Date")))
    return _E.table(head, _E.tbody(*rows), border="1")


def _entry(p: Product, ref: str, *, vaccination: bool) -> Element:
    material = _E.manufacturedMaterial(
        _E.code(
            _E.originalText(_E.reference(value=f"#{ref}")),
            _E.translation(code=p.gtin, codeSystem=GTIN_OID, codeSystemName="GS1 GTIN", displayName=_label(p)),
            nullFlavor="UNK",
        ),
        _E.name(_label(p)),
    )
    if p.lot:
        material.append(_E.lotNumberText(p.lot))
    children: list[Element] = []
    if vaccination:
        children += [
            _E.templateId(root="2.16.840.1.113883.10.20.1.24"),  # CCD medication activity
            _E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.12"),  # IHE PCC immunization
        ]
    children.append(_E.id(nullFlavor="NI"))
    if vaccination:
        children.append(_E.code(code="IMMUNIZ", codeSystem=ACT_CODE, codeSystemName="ActCode"))
    children += [
        _E.text(_E.reference(value=f"#{ref}")),
        _E.statusCode(code="completed"),
        _E.effectiveTime(value=ts(p.dispensed_at)),
        _E.consumable(_E.manufacturedProduct(material)),
    ]
    attrs = {"classCode": "SBADM", "moodCode": "EVN"}
    if vaccination:
        attrs["negationInd"] = "false"
    return _E.entry(_E.substanceAdministration(*children, **attrs))


def _section(code: Code, title: str, text: list[Element | str], entries: list[Element], *templates: str) -> Element:
    return _E.component(
        _E.section(
            *(_E.templateId(root=t) for t in templates),
            _code("code", code, codeSystemName="LOINC"),
            _E.title(title),
            _E.text(*text),
            *entries,
        )
    )


def _intro(doc: DmpDocument, what: str) -> Element:
    when = doc.written_at.astimezone(UTC).strftime("%d/%m/%Y")
    return _E.paragraph(f"{what} le {when} par {doc.author.name}, pharmacien, à la {doc.pharmacy.name}.")


def _body(doc: DmpDocument) -> list[Element]:
    kind = doc.kind.name
    sections: list[Element] = []
    if kind == "vaccination":
        intro = _intro(doc, "Vaccination réalisée à l'officine")
        if doc.products:
            text: list[Element | str] = [intro, _products_table(doc.products, "vac", "Vaccin")]
        else:
            text = [intro, _E.paragraph("Aucun vaccin n'a été enregistré à la délivrance de cette visite.")]
        entries = [_entry(p, f"vac-{i}", vaccination=True) for i, p in enumerate(doc.products, start=1)]
        sections.append(
            _section(
                Code("11369-6", LOINC, "Historique des vaccinations"),
                "Vaccinations",
                text,
                entries,
                "1.3.6.1.4.1.19376.1.5.3.1.3.23",  # IHE PCC immunizations section
            )
        )
    else:
        what = (
            "Entretien pharmaceutique réalisé"
            if kind == "pharmaceutical-interview"
            else "Bilan partagé de médication réalisé"
        )
        span = "de cette visite" if kind == "pharmaceutical-interview" else "des douze derniers mois"
        intro = _intro(doc, what)
        if doc.products:
            text = [intro, _products_table(doc.products, "med", "Médicament")]
        else:
            text = [intro, _E.paragraph(f"Aucun médicament délivré {span} à l'officine.")]
        entries = [_entry(p, f"med-{i}", vaccination=False) for i, p in enumerate(doc.products, start=1)]
        title = "Traitements dispensés" if kind == "pharmaceutical-interview" else "Médicaments délivrés à l'officine"
        sections.append(_section(Code("10160-0", LOINC, "Historique de la prise médicamenteuse"), title, text, entries))
    if doc.note.strip():
        sections.append(
            _section(Code("48767-8", LOINC, "Commentaire"), "Commentaire du pharmacien", [_E.paragraph(doc.note)], [])
        )
    return sections


def build(doc: DmpDocument) -> Element:
    """The ClinicalDocument element."""
    root: Element = _E.ClinicalDocument(*_header(doc), _E.component(_E.structuredBody(*_body(doc))))
    return root


def document_bytes(doc: DmpDocument) -> bytes:
    """The CDA as UTF-8 bytes with its XML declaration, as the repository stores it."""
    data: bytes = etree.tostring(build(doc), xml_declaration=True, encoding="UTF-8")
    return data
