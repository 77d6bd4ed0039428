"""INSi SOAP 1.2 envelopes: what the box sends, checked against the published contract, and what it reads.

The schemas below restate, element by element, the structures of the WSDL DESIR_ICIR_EXP_1.5.0 and its
XSDs (CTXBAM 01_02, CTXLPS 01_00, INSiRecVit, INSiRecSans, INSiResultat): sequence order, required
elements, patterns. The answers are shaped like the CNDA qualification fixtures (prefixes and all:
``S:Body``, ``env:Body``, a default or an ``ns2`` namespace for RESULTAT, INSHISTO with or without dates),
with invented people.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from appliance.domain import Beneficiary, Ins, InsiOutcome, InsiResult, PastIns, Traits
from sandbox import insi_soap as sandbox_soap
from sandbox import population as pop
from sync import insi_soap
from sync.insi_soap import InsiAnswerError, InsiSettings, Operation, SoapFault

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
BAM = "urn:siram:bam:ctxbam"
LPS = "urn:siram:lps:ctxlps"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RESULTAT = "http://www.cnamts.fr/INSiResultat"
NS = {"s": SOAP, "wsa": WSA, "bam": BAM, "lps": LPS, "v": RECVIT, "r": RECSANS, "res": RESULTAT}

SETTINGS = InsiSettings(
    emitter="FINESS-750000001",
    idam="IDAM-TEST-0042",
    software_name="comptoir",
    software_version="1.4.2",
    instance="6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
)
NOW = datetime(2026, 6, 15, 9, 30, 12, 345000, tzinfo=UTC)


def _schema(target: str, body: str) -> etree.XMLSchema:
    return etree.XMLSchema(
        etree.fromstring(
            f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="{target}" targetNamespace="{target}" '
            f'elementFormDefault="qualified">{body}</xs:schema>'
        )
    )


CTXBAM = _schema(
    BAM,
    """
    <xs:element name="ContexteBAM"><xs:complexType><xs:sequence>
      <xs:element name="Id" type="xs:string"/><xs:element name="Temps" type="xs:dateTime"/>
      <xs:element name="Emetteur" type="xs:string" minOccurs="0"/>
      <xs:element name="DateRef" type="xs:dateTime" minOccurs="0"/>
      <xs:element name="COUVERTURE"><xs:complexType><xs:sequence>
        <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
    </xs:sequence>
    <xs:attribute name="Nature" type="xs:string"/><xs:attribute name="Version" type="xs:string" use="required"/>
    </xs:complexType></xs:element>""",
)
CTXLPS = _schema(
    LPS,
    """
    <xs:element name="ContexteLPS"><xs:complexType><xs:sequence>
      <xs:element name="Id" type="xs:string"/><xs:element name="Temps" type="xs:dateTime"/>
      <xs:element name="Emetteur" type="xs:string" minOccurs="0"/>
      <xs:element name="LPS" minOccurs="0"><xs:complexType><xs:sequence>
        <xs:element name="IDAM" minOccurs="0"><xs:complexType><xs:simpleContent><xs:extension base="xs:string">
          <xs:attribute name="R" type="xs:string"/></xs:extension></xs:simpleContent></xs:complexType></xs:element>
        <xs:element name="Version" type="xs:string" minOccurs="0"/>
        <xs:element name="Instance" type="xs:string" minOccurs="0"/>
        <xs:element name="Nom" type="xs:string" minOccurs="0"/>
      </xs:sequence></xs:complexType></xs:element>
    </xs:sequence>
    <xs:attribute name="Nature"><xs:simpleType><xs:restriction base="xs:string"><xs:pattern value="CTXLPS"/>
      </xs:restriction></xs:simpleType></xs:attribute>
    <xs:attribute name="Version" type="xs:string" use="required"/>
    </xs:complexType></xs:element>""",
)
_MATRICULE = """<xs:complexType name="Matricule"><xs:sequence>
      <xs:element name="NumIdentifiant" minOccurs="0"><xs:simpleType><xs:restriction base="xs:string">
        <xs:pattern value="\\d{6}[AB0-9]\\d{6}"/></xs:restriction></xs:simpleType></xs:element>
      <xs:element name="Cle" minOccurs="0"><xs:simpleType><xs:restriction base="xs:string"><xs:pattern value="\\d{2}"/>
        </xs:restriction></xs:simpleType></xs:element>
      <xs:element name="TypeMatricule" type="xs:string" minOccurs="0"/></xs:sequence></xs:complexType>"""
_DATE = """<xs:simpleType name="DateLunaire"><xs:restriction base="xs:string"><xs:pattern value="\\d{4}-\\d{2}-\\d{2}"/>
    </xs:restriction></xs:simpleType>"""
RECVITALE = _schema(
    RECVIT,
    f"""{_MATRICULE}{_DATE}
    <xs:element name="RECVITALE"><xs:complexType><xs:sequence>
      <xs:element name="MatriculeIndividu" type="t:Matricule" minOccurs="0"/>
      <xs:element name="MatriculeOD" type="t:Matricule" minOccurs="0"/>
      <xs:element name="NomNaissance" type="xs:string" minOccurs="0"/>
      <xs:element name="DateNaissance" type="t:DateLunaire" minOccurs="0"/>
      <xs:element name="RangNaissance" type="xs:string" minOccurs="0"/>
    </xs:sequence></xs:complexType></xs:element>""",
)
RECSANSVITALE = _schema(
    RECSANS,
    f"""{_DATE}
    <xs:element name="RECSANSVITALE"><xs:complexType><xs:sequence>
      <xs:element name="NomNaissance" type="xs:string" minOccurs="0"/>
      <xs:element name="Prenom" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element name="Sexe" type="xs:string" minOccurs="0"/>
      <xs:element name="DateNaissance" type="t:DateLunaire" minOccurs="0"/>
      <xs:element name="LieuNaissance" type="xs:string" minOccurs="0"/>
    </xs:sequence></xs:complexType></xs:element>""",
)
_INS = """<xs:complexType name="INS"><xs:sequence>
      <xs:element name="IdIndividu"><xs:complexType><xs:sequence>
        <xs:element name="NumIdentifiant"><xs:simpleType><xs:restriction base="xs:string">
          <xs:pattern value="\\d{6}[A-Za-z0-9](\\d{6})"/></xs:restriction></xs:simpleType></xs:element>
        <xs:element name="Cle" minOccurs="0"><xs:simpleType><xs:restriction base="xs:string">
          <xs:pattern value="[0-9]{2}"/></xs:restriction></xs:simpleType></xs:element>
        <xs:element name="TypeMatricule" type="xs:string" minOccurs="0"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="OID" type="xs:string"/>
      <xs:element name="DateDeb" type="xs:date" minOccurs="0"/><xs:element name="DateFin" type="xs:date" minOccurs="0"/>
    </xs:sequence></xs:complexType>"""
RESULT = _schema(
    RESULTAT,
    f"""{_INS}{_DATE}
    <xs:element name="RESULTAT"><xs:complexType><xs:sequence>
      <xs:element name="CR"><xs:complexType><xs:sequence>
        <xs:element name="CodeCR" type="xs:string"/><xs:element name="LibelleCR" type="xs:string"/>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="INDIVIDU" minOccurs="0"><xs:complexType><xs:sequence>
        <xs:element name="INSACTIF" type="t:INS"/>
        <xs:element name="INSHISTO" type="t:INS" minOccurs="0" maxOccurs="unbounded"/>
        <xs:element name="TIQ"><xs:complexType><xs:sequence>
          <xs:element name="NomNaissance" type="xs:string" minOccurs="0"/>
          <xs:element name="Prenom" type="xs:string" minOccurs="0"/>
          <xs:element name="ListePrenom" type="xs:string" minOccurs="0"/>
          <xs:element name="Sexe" minOccurs="0"><xs:simpleType><xs:restriction base="xs:string">
            <xs:pattern value="[A-Z]"/></xs:restriction></xs:simpleType></xs:element>
          <xs:element name="DateNaissance" type="t:DateLunaire" minOccurs="0"/>
          <xs:element name="LieuNaissance" type="xs:string" minOccurs="0"/>
        </xs:sequence></xs:complexType></xs:element>
      </xs:sequence></xs:complexType></xs:element>
    </xs:sequence></xs:complexType></xs:element>""",
)

LEROUX = pop.person("traits-differ")
TWIN = pop.person("petit-noah").beneficiary


def _parts(request: insi_soap.SoapRequest) -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.fromstring(request.envelope)
    assert root.tag == f"{{{SOAP}}}Envelope"
    header, body = root.find("s:Header", NS), root.find("s:Body", NS)
    assert header is not None and body is not None and list(root) == [header, body]
    return root, header, body


# --- the requests


@pytest.mark.parametrize(
    ("operation", "request_of"),
    [
        (Operation.CARD, lambda: insi_soap.card_request(TWIN, SETTINGS, now=NOW)),
        (Operation.TRAITS, lambda: insi_soap.traits_request(LEROUX.beneficiary.traits, SETTINGS, now=NOW)),
    ],
)
def test_every_request_carries_the_context_headers_the_wsdl_binds(operation: Operation, request_of) -> None:  # type: ignore[no-untyped-def]
    request = request_of()
    assert request.envelope.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    _, header, _ = _parts(request)
    bam, lps, action, message_id = list(header)
    CTXBAM.assertValid(bam)
    CTXLPS.assertValid(lps)
    assert bam.tag == f"{{{BAM}}}ContexteBAM" and bam.get("Version") == "01_02"
    assert bam.findtext("bam:Emetteur", namespaces=NS) == "FINESS-750000001"
    assert bam.findtext("bam:Temps", namespaces=NS) == "2026-06-15T09:30:12.345Z"
    assert bam.find("bam:COUVERTURE", NS) is not None
    assert lps.tag == f"{{{LPS}}}ContexteLPS" and (lps.get("Nature"), lps.get("Version")) == ("CTXLPS", "01_00")
    assert lps.findtext("lps:Emetteur", namespaces=NS) == "FINESS-750000001"
    idam = lps.find("lps:LPS/lps:IDAM", NS)
    assert idam is not None and (idam.text, idam.get("R")) == ("IDAM-TEST-0042", "4")
    assert [c.text for c in lps.find("lps:LPS", NS)][1:] == ["1.4.2", SETTINGS.instance, "comptoir"]  # type: ignore[union-attr]
    assert re.fullmatch(r"[0-9a-f-]{36}", bam.findtext("bam:Id", namespaces=NS) or "")
    assert action.tag == f"{{{WSA}}}Action" and action.text == f"urn:ServiceIdentiteCertifiee:1.0.0:{operation.value}"
    assert message_id.tag == f"{{{WSA}}}MessageID" and message_id.text == request.message_id
    assert re.fullmatch(r"uuid:[0-9a-f-]{36}", request.message_id)
    assert request.content_type == (
        f'application/soap+xml; charset=utf-8; action="urn:ServiceIdentiteCertifiee:1.0.0:{operation.value}"'
    )
    assert (
        header.find("{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security")
        is None
    )  # mutual TLS: the structure's certificate, no professional's assertion


def test_each_request_has_its_own_message_id() -> None:
    first, second = (insi_soap.traits_request(LEROUX.beneficiary.traits, SETTINGS) for _ in range(2))
    assert first.message_id != second.message_id


def test_a_card_search_sends_the_holder_the_beneficiary_the_birth_date_and_the_rank() -> None:
    _, _, body = _parts(insi_soap.card_request(TWIN, SETTINGS, now=NOW))
    (search,) = list(body)
    RECVITALE.assertValid(search)
    assert search.tag == f"{{{RECVIT}}}RECVITALE"
    od = search.find("v:MatriculeOD", NS)
    own = search.find("v:MatriculeIndividu", NS)
    assert od is not None and own is not None
    assert od.findtext("v:NumIdentifiant", namespaces=NS) + od.findtext("v:Cle", namespaces=NS) == TWIN.holder_nir  # type: ignore[operator]
    assert own.findtext("v:NumIdentifiant", namespaces=NS) + own.findtext("v:Cle", namespaces=NS) == TWIN.nir  # type: ignore[operator]
    assert search.findtext("v:DateNaissance", namespaces=NS) == "2020-05-20"
    assert search.findtext("v:RangNaissance", namespaces=NS) == "2"
    assert search.findtext("v:NomNaissance", namespaces=NS) == "PETIT"


def test_the_card_holder_is_sent_once() -> None:
    holder = pop.person("petit-nadia").beneficiary
    _, _, body = _parts(insi_soap.card_request(holder, SETTINGS))
    assert body[0].find("v:MatriculeIndividu", NS) is None
    assert body[0].find("v:MatriculeOD/v:NumIdentifiant", NS).text == holder.nir[:13]  # type: ignore[union-attr]


def test_a_traits_search_sends_the_traits_in_the_schema_order() -> None:
    traits = Traits("SANTONI", "ANTOINE", "M", date(1965, 11, 8), "2A004")
    _, _, body = _parts(insi_soap.traits_request(traits, SETTINGS, now=NOW))
    (search,) = list(body)
    RECSANSVITALE.assertValid(search)
    assert [(etree.QName(c).localname, c.text) for c in search] == [
        ("NomNaissance", "SANTONI"),
        ("Prenom", "ANTOINE"),
        ("Sexe", "M"),
        ("DateNaissance", "1965-11-08"),
        ("LieuNaissance", "2A004"),
    ]
    _, _, without_place = _parts(insi_soap.traits_request(replace(traits, birth_place=None), SETTINGS))
    assert without_place[0].find("r:LieuNaissance", NS) is None


def test_names_are_escaped_by_the_builder_not_pasted() -> None:
    traits = Traits("D'ARC & <FILS>", "JEANNE", "F", date(1990, 1, 6))
    _, _, body = _parts(insi_soap.traits_request(traits, SETTINGS))
    assert body[0].findtext("r:NomNaissance", namespaces=NS) == "D'ARC & <FILS>"


def test_a_professional_assertion_goes_into_wsse_security() -> None:
    assertion = etree.Element("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion", ID="_a1")
    request = insi_soap.traits_request(LEROUX.beneficiary.traits, SETTINGS, security=assertion)
    _, header, _ = _parts(request)
    security = header[-1]
    assert security.tag == "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
    assert security[0].get("ID") == "_a1"


# --- the settings


def test_settings_default_to_the_sandbox_and_a_real_endpoint_needs_the_structure_and_the_software() -> None:
    default = insi_soap.settings_from_table({})
    assert default.url("http://127.0.0.1:8765/") == "http://127.0.0.1:8765/lps"
    real = insi_soap.settings_from_table(
        {"endpoint": "https://insi.example.fr/lps", "emitter": "750000001", "idam": "AM-1234", "instance": "i-1"}
    )
    assert real.url("https://other.example.fr") == "https://insi.example.fr/lps"
    assert (real.emitter, real.idam, real.instance) == ("750000001", "AM-1234", "i-1")
    with pytest.raises(insi_soap.InsiSettingsError, match="set emitter and idam"):
        insi_soap.settings_from_table({"endpoint": "https://insi.example.fr/lps"})
    with pytest.raises(insi_soap.InsiSettingsError, match="unknown key"):
        insi_soap.settings_from_table({"idm": "x"})
    with pytest.raises(insi_soap.InsiSettingsError, match="non-empty string"):
        insi_soap.settings_from_table({"idam": ""})


# --- the answers, shaped like the published ones

FOUND_WITH_HISTORY = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><S:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope">
<RESULTAT xmlns:ns3="http://www.cnamts.fr/INSiRecVit" xmlns:ns2="http://www.cnamts.fr/INSiRecSans" xmlns="http://www.cnamts.fr/INSiResultat">
<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>
<INDIVIDU>
  <INSACTIF><IdIndividu><NumIdentifiant>1840563220471</NumIdentifiant><Cle>{key1}</Cle></IdIndividu>
    <OID>1.2.250.1.213.1.4.8</OID></INSACTIF>
  <INSHISTO><IdIndividu><NumIdentifiant>2840563220471</NumIdentifiant><Cle>{key2}</Cle><TypeMatricule>NIR</TypeMatricule>
    </IdIndividu><OID>1.2.250.1.213.1.4.8</OID></INSHISTO>
  <INSHISTO><DateDeb>2001-03-01</DateDeb><DateFin>2012-02-28</DateFin><IdIndividu><NumIdentifiant>1840599350112</NumIdentifiant>
    <Cle>{key3}</Cle></IdIndividu><OID>1.2.250.1.213.1.4.9</OID></INSHISTO>
  <TIQ><NomNaissance>VERCINGETORIX</NomNaissance><ListePrenom>JULES-ALEXIS MARTIAL</ListePrenom><Sexe>M</Sexe>
    <DateNaissance>1984-05-17</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ>
</INDIVIDU></RESULTAT></S:Body></soap:Envelope>"""

FOUND_PREFIXED = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><env:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope"
 xmlns:env="http://www.w3.org/2003/05/soap-envelope"><ns2:RESULTAT xmlns:ns3="http://www.cnamts.fr/INSiRecVit"
 xmlns:ns2="http://www.cnamts.fr/INSiResultat" xmlns="http://www.cnamts.fr/INSiRecSans"><ns2:CR><ns2:CodeCR>00</ns2:CodeCR>
<ns2:LibelleCR>OK</ns2:LibelleCR></ns2:CR><ns2:INDIVIDU><ns2:INSACTIF><ns2:IdIndividu><ns2:NumIdentifiant>271022B033150</ns2:NumIdentifiant>
</ns2:IdIndividu><ns2:OID>1.2.250.1.213.1.4.8</ns2:OID></ns2:INSACTIF><ns2:INSHISTO><ns2:IdIndividu>
<ns2:NumIdentifiant>271022B033150</ns2:NumIdentifiant><ns2:Cle>{key}</ns2:Cle></ns2:IdIndividu><ns2:OID>1.2.250.1.213.1.4.8</ns2:OID>
<ns2:DateDeb>1971-02-01</ns2:DateDeb></ns2:INSHISTO><ns2:TIQ><ns2:NomNaissance>CASANOVA</ns2:NomNaissance>
<ns2:Prenom>LIVIA</ns2:Prenom><ns2:Sexe>F</ns2:Sexe><ns2:DateNaissance>1971-02-05</ns2:DateNaissance>
<ns2:LieuNaissance>2B033</ns2:LieuNaissance></ns2:TIQ></ns2:INDIVIDU></ns2:RESULTAT></env:Body></soap:Envelope>"""

NONE_FOUND = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
    '<S:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope"><RESULTAT xmlns="http://www.cnamts.fr/INSiResultat">'
    "<CR><CodeCR>01</CodeCR><LibelleCR>Aucune identite trouvee</LibelleCR></CR></RESULTAT></S:Body></soap:Envelope>"
)
SEVERAL_FOUND = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
    '<env:Body xmlns:env="http://www.w3.org/2003/05/soap-envelope"><ns2:RESULTAT xmlns:ns2="http://www.cnamts.fr/INSiResultat">'
    "<ns2:CR><ns2:CodeCR>02</ns2:CodeCR><ns2:LibelleCR>Plusieurs identites trouvees</ns2:LibelleCR></ns2:CR>"
    "</ns2:RESULTAT></env:Body></soap:Envelope>"
)
UNAUTHORISED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
    '<env:Body xmlns:env="http://www.w3.org/2003/05/soap-envelope"><soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value>'
    "<soap:Subcode><soap:Value>soap:siram_100</soap:Value></soap:Subcode></soap:Code><soap:Reason>"
    "<soap:Text xml:lang=\"fr\">L'accès par ce progiciel au service n'est pas autorisé. "
    "Contactez l'éditeur du progiciel ou votre responsable informatique.</soap:Text></soap:Reason><soap:Detail>"
    '<siram:Erreur code="desir_550" messageID="uuid:0f0e0d0c-0000-4000-8000-000000000001" severite="erreur" '
    'xmlns:siram="urn:siram">Numéro d\'autorisation du logiciel inconnu.</siram:Erreur></soap:Detail></soap:Fault>'
    "</env:Body></soap:Envelope>"
)


def _key(body: str) -> str:
    from appliance.codes.nir import nir_key

    return nir_key(body)


def test_00_with_the_ins_history_becomes_a_found_identity_and_its_former_matricules() -> None:
    xml = FOUND_WITH_HISTORY.format(
        key1=_key("1840563220471"), key2=_key("2840563220471"), key3=_key("1840599350112")
    ).encode()
    result = insi_soap.parse_response(xml)
    assert result == InsiResult(
        InsiOutcome.FOUND,
        (
            Ins(
                "1840563220471" + _key("1840563220471"),
                "1.2.250.1.213.1.4.8",
                Traits("VERCINGETORIX", "JULES-ALEXIS MARTIAL", "M", date(1984, 5, 17), "63220"),
            ),
        ),
        (
            PastIns("2840563220471" + _key("2840563220471"), "1.2.250.1.213.1.4.8"),
            PastIns(
                "1840599350112" + _key("1840599350112"),
                "1.2.250.1.213.1.4.9",
                valid_from=date(2001, 3, 1),
                valid_to=date(2012, 2, 28),
            ),
        ),
    )


def test_00_with_prefixed_elements_a_corsican_number_and_no_key() -> None:
    result = insi_soap.parse_response(FOUND_PREFIXED.format(key=_key("271022B033150")).encode())
    (ins,) = result.identities
    assert ins.matricule == "271022B033150" + _key("271022B033150")  # Cle left out: computed
    assert ins.traits == Traits("CASANOVA", "LIVIA", "F", date(1971, 2, 5), "2B033")  # Prenom when no ListePrenom
    assert result.history == (PastIns(ins.matricule, "1.2.250.1.213.1.4.8", valid_from=date(1971, 2, 1)),)


def test_01_and_02() -> None:
    assert insi_soap.parse_response(NONE_FOUND.encode()) == InsiResult(InsiOutcome.NONE)
    assert insi_soap.parse_response(SEVERAL_FOUND.encode()) == InsiResult(InsiOutcome.SEVERAL)


def test_a_fault_carries_its_codes_and_a_french_message() -> None:
    with pytest.raises(SoapFault) as info:
        insi_soap.parse_response(UNAUTHORISED.encode())
    fault = info.value
    assert (fault.code, fault.subcode, fault.error_code, fault.severity) == (
        "Sender",
        "siram_100",
        "desir_550",
        "erreur",
    )
    assert not fault.temporary and fault.business_code == "desir_550"
    assert fault.message == (
        "L'accès par ce progiciel au service n'est pas autorisé. Contactez l'éditeur du progiciel ou votre "
        "responsable informatique. (Numéro d'autorisation du logiciel inconnu.)"
    )
    assert insi_soap.fault_of(UNAUTHORISED.encode()) is not None
    assert insi_soap.fault_of(NONE_FOUND.encode()) is None and insi_soap.fault_of(b"<html/>") is None


def test_a_receiver_fault_or_an_upstream_outage_is_temporary() -> None:
    upstream = sandbox_soap.unavailable_envelope()
    fault = insi_soap.fault_of(upstream)
    assert fault is not None and fault.temporary and (fault.code, fault.subcode) == ("Receiver", "siram_40")
    assert SoapFault("Sender", "siram_40").temporary


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not xml", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "y">]><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>',
            "document type declaration",
        ),
        (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>', "SOAP 1.1"),
        (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>', "without a Body"),
        (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>', "no RESULTAT"),
        (NONE_FOUND.replace("<CodeCR>01", "<CodeCR>07").encode(), "CodeCR '07'"),
        (NONE_FOUND.replace("<CodeCR>01", "<CodeCR>00").encode(), "00 with 0 INDIVIDU"),
        (
            FOUND_WITH_HISTORY.format(key1="00", key2="00", key3="00").replace("1984-05-17", "1984-05-00").encode(),
            "DateNaissance is not a YYYY-MM-DD date",
        ),
        (
            FOUND_PREFIXED.replace(
                "271022B033150</ns2:NumIdentifiant>\n</ns2:IdIndividu>", "12</ns2:NumIdentifiant></ns2:IdIndividu>"
            ).encode(),
            "13 characters",
        ),
    ],
)
def test_answers_the_domain_cannot_use_are_named(data: bytes, message: str) -> None:
    with pytest.raises(InsiAnswerError, match=re.escape(message)):
        insi_soap.parse_response(data)


# --- the sandbox's answers follow the same schema


def test_the_sandbox_answers_validate_against_the_resultat_schema() -> None:
    leroux = pop.POPULATION.insi_by_traits(LEROUX.beneficiary.traits)
    assert leroux.outcome is InsiOutcome.FOUND and leroux.history
    for result in (leroux, InsiResult(InsiOutcome.NONE)):
        envelope = etree.fromstring(sandbox_soap.result_envelope(result))
        body = envelope.find("s:Body", NS)
        assert body is not None
        RESULT.assertValid(body[0])
        assert insi_soap.parse_response(sandbox_soap.result_envelope(result)) == result


def test_the_sandbox_lists_the_02_candidates_beyond_the_published_schema() -> None:
    b = pop.person("insi-two").beneficiary
    several = pop.POPULATION.insi_by_card(b.holder_nir, b.traits.birth_date, b.rank)
    envelope = etree.fromstring(sandbox_soap.result_envelope(several))
    assert not RESULT.validate(envelope.find("s:Body", NS)[0])  # type: ignore[index]  # two INDIVIDU
    assert insi_soap.parse_response(sandbox_soap.result_envelope(several)) == several


def test_the_sandbox_reads_what_the_box_sends() -> None:
    card = sandbox_soap.read_request(insi_soap.card_request(TWIN, SETTINGS).envelope, "application/soap+xml")
    assert card.card == sandbox_soap.CardSearch(TWIN.holder_nir, TWIN.traits.birth_date, 2)
    assert (card.emitter, card.idam) == ("FINESS-750000001", "IDAM-TEST-0042")
    traits = sandbox_soap.read_request(
        insi_soap.traits_request(LEROUX.beneficiary.traits, SETTINGS).envelope, "application/soap+xml; charset=utf-8"
    )
    assert traits.traits == LEROUX.beneficiary.traits and traits.operation is Operation.TRAITS


def test_a_beneficiary_without_a_key_is_still_searched() -> None:
    short = Beneficiary(nir=TWIN.nir[:13], rank=1, traits=TWIN.traits, holder_nir=TWIN.holder_nir)
    _, _, body = _parts(insi_soap.card_request(short, SETTINGS))
    assert body[0].find("v:MatriculeIndividu/v:Cle", NS) is None
    RECVITALE.assertValid(body[0])


def test_the_sync_process_reads_the_same_insi_table(tmp_path: Path) -> None:
    from sync.service import ConfigError, load_config

    path = tmp_path / "sync.toml"
    path.write_text(
        '[store]\ndb = "box.db"\n[teleservices]\nurl = "https://t.example"\n'
        '[teleservices.insi]\nemitter = "750000001"\nidam = "AM-42"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.teleservices is not None and config.teleservices.insi is not None
    assert config.teleservices.insi.url(config.teleservices.url) == "https://t.example/lps"
    path.write_text(
        '[store]\ndb = "box.db"\n[teleservices]\nurl = "https://t.example"\n[teleservices.insi]\nidem = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
