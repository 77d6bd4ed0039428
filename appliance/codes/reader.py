"""From raw scan bytes to a :class:`DecodedCode`: decide the kind, parse, never crash.

The kind is decided by the structured formats' headers first (2D-DOC, INS, GS1), then the
attestation marker, then the configured opaque patterns, and last by what the workflow step
expects. Bad input of any kind becomes a result with errors in plain words.
"""

from __future__ import annotations

from collections.abc import Collection

from appliance.codes.attestation import looks_like_attestation, parse_attestation
from appliance.codes.config import CodeConfig
from appliance.codes.errors import CodeError
from appliance.codes.gs1 import looks_like_gs1, parse_gs1
from appliance.codes.ins import looks_like_ins, parse_ins
from appliance.codes.kinds import CodeKind, DecodedCode
from appliance.codes.opaque import OPAQUE_KINDS, read_opaque
from appliance.codes.symbology import GS1_SYMBOLOGIES, split_symbology
from appliance.codes.trust import TrustList
from appliance.codes.twoddoc import looks_like_2d_doc, parse_2d_doc


class CodeReader:
    """Reads every code presented at the counter with one trust list and one configuration."""

    def __init__(self, trust: TrustList | None = None, config: CodeConfig | None = None) -> None:
        self.trust = trust if trust is not None else TrustList()
        self.config = config if config is not None else CodeConfig()

    def read(
        self,
        raw: bytes,
        *,
        symbology: str | None = None,
        expect: Collection[CodeKind] | None = None,
    ) -> DecodedCode:
        """Understand one scan.

        ``symbology`` is the AIM identifier the reader reported, when it did not prefix the data
        with it. ``expect`` holds the kinds the current workflow step waits for: an opaque code that
        matches no pattern is taken for the one opaque kind expected, if there is exactly one.
        """
        prefix, stripped = split_symbology(raw)
        if symbology is None or prefix == symbology:
            # keyboard and serial scanners prefix the identifier to the data (and may report it too)
            symbology, data = prefix, stripped
        else:
            # the reader (camera) reported it apart: the data is exactly the code's content
            data = raw
        kind = self._kind(data, symbology, expect)
        try:
            return self._parse(kind, raw, data, symbology)
        except CodeError as exc:
            return DecodedCode(kind=kind, raw=raw, errors=(str(exc),))

    def _kind(self, data: bytes, symbology: str | None, expect: Collection[CodeKind] | None) -> CodeKind:
        if looks_like_2d_doc(data):
            return CodeKind.TWO_D_DOC
        if looks_like_ins(data):
            return CodeKind.INS
        if symbology in GS1_SYMBOLOGIES or looks_like_gs1(data):
            return CodeKind.GS1
        if looks_like_attestation(data, self.config.attestation):
            return CodeKind.AMC_ATTESTATION
        matched = self.config.opaque.match(data)
        if matched is not None:
            return matched
        expected_opaque = [k for k in (expect or ()) if k in OPAQUE_KINDS]
        if len(expected_opaque) == 1 and data:
            return expected_opaque[0]
        return CodeKind.UNKNOWN

    def _parse(self, kind: CodeKind, raw: bytes, data: bytes, symbology: str | None) -> DecodedCode:
        match kind:
            case CodeKind.TWO_D_DOC:
                doc = parse_2d_doc(data, self.trust)
                return DecodedCode(kind, raw, doc.to_fields(), doc.problems, doc)
            case CodeKind.INS:
                ins = parse_ins(data)
                return DecodedCode(kind, raw, ins.to_fields(), ins.problems, ins)
            case CodeKind.GS1:
                box = parse_gs1(data, symbology=symbology)
                return DecodedCode(kind, raw, box.to_fields(), (), box)
            case CodeKind.AMC_ATTESTATION:
                attestation = parse_attestation(data, self.config.attestation)
                return DecodedCode(kind, raw, attestation.to_fields(), attestation.problems, attestation)
            case CodeKind.APCV | CodeKind.EPRESCRIPTION:
                token = read_opaque(data, kind, matched_pattern=self.config.opaque.match(data) is kind)
                return DecodedCode(kind, raw, token.to_fields(), (), token)
            case _:
                return DecodedCode(CodeKind.UNKNOWN, raw, errors=(_unknown_message(data),))


def _unknown_message(data: bytes) -> str:
    if not data:
        return "the code is empty"
    return "this code is not one the counter knows (not a 2D-DOC, INS, medicine box, apCV, prescription or attestation)"
