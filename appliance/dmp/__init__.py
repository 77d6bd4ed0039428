"""Feeding the DMP (DESIGN §3 step 10): the CDA R2 documents and their IHE XDS.b metadata.

The counter feeds three documents — the vaccination note, the pharmaceutical interview report and the
shared medication review — for a patient whose INS is qualified, with the visibility they chose. The
delivery (:mod:`appliance.delivery`) reads what the document says from the store
(:meth:`appliance.store.records.CounterRecords.dmp_source`), builds it here and hands the result to the
teleservice port as an ITI-41 submission: ``{"profile": "ITI-41", "metadata": <lcm:SubmitObjectsRequest
bytes>, "documents": [{"id", "mime_type", "content"}], ...}``; :mod:`sync.dmp_xds` wraps it in SOAP 1.2
with MTOM/XOP. Nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from appliance.dmp import cda, xds
from appliance.dmp.model import KINDS, DmpDocument

__all__ = ["KINDS", "DmpDocument", "Submission", "submission"]


@dataclass(frozen=True, slots=True)
class Submission:
    """One ITI-41 Provide and Register Document Set-b request, before its transport."""

    metadata: bytes
    """The ``lcm:SubmitObjectsRequest`` (UTF-8 XML, no declaration)."""
    document_id: str
    """The ExtrinsicObject id the document part is attached to."""
    document: bytes
    """The CDA (UTF-8 XML with its declaration)."""
    document_unique_id: str
    submission_unique_id: str

    def wire(self) -> dict[str, Any]:
        """The payload handed to :meth:`appliance.teleservices.Teleservices.deliver` for stream ``dmp``."""
        return {
            "profile": "ITI-41",
            "metadata": self.metadata,
            "documents": [{"id": self.document_id, "mime_type": "text/xml", "content": self.document}],
            "document_unique_id": self.document_unique_id,
            "submission_unique_id": self.submission_unique_id,
        }


def submission(doc: DmpDocument, *, submitted_at: datetime) -> Submission:
    """The CDA of ``doc`` and its metadata, ready for the transport."""
    metadata = etree.tostring(xds.submit_objects_request(doc, submitted_at=submitted_at), encoding="UTF-8")
    return Submission(
        metadata=metadata,
        document_id=xds.DOCUMENT_SYMBOL,
        document=cda.document_bytes(doc),
        document_unique_id=doc.ids.document,
        submission_unique_id=doc.ids.submission,
    )
