"""Who may talk to the DICOM SCP, what facility each peer is, and where C-MOVE may send.

``HUIZHEN_DICOM_PEERS`` (``AE=FACILITY,…``) is the allow-list of calling AE
titles. With none configured, development accepts any AE (each association
is logged) and production refuses to start: an archive of patient images open
to any host is a configuration mistake, not a default.

A PatientID sent without IssuerOfPatientID is named by the calling AE's
facility code — the system HL7 gives an MRN sent without an assigning
authority from that facility, so both channels find the same patient. An AE
without a facility (development only) gets ``urn:huizhen:dicom-ae:<AE>``,
which can never collide with a real facility's MRNs.
"""

from __future__ import annotations

from dataclasses import dataclass

from huizhen.integration.errors import ConfigurationError
from huizhen.settings import Settings, parse_addresses


@dataclass(frozen=True, slots=True)
class Peer:
    """The calling side of one association."""

    ae_title: str
    address: str | None = None  # host:port
    facility_code: str | None = None

    @property
    def default_issuer(self) -> str:
        return self.facility_code or f"urn:huizhen:dicom-ae:{self.ae_title}"


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    facilities: dict[str, str]  # calling AE title -> facility code
    open_to_any: bool  # development without an allow-list

    @classmethod
    def from_settings(cls, settings: Settings) -> PeerPolicy:
        peers = settings.peers
        if not peers and not settings.development:
            raise ConfigurationError(
                "the DICOM listener needs HUIZHEN_DICOM_PEERS (AE=FACILITY,…) in production: "
                "with no allow-list any host could store and retrieve images; "
                "set it, or disable the listener with HUIZHEN_DICOM_PORT=0"
            )
        return cls(facilities=dict(peers), open_to_any=not peers)

    @property
    def allowed_ae_titles(self) -> list[str]:
        return sorted(self.facilities)

    def peer(self, ae_title: str, address: str | None) -> Peer:
        ae = ae_title.strip()
        return Peer(ae_title=ae, address=address, facility_code=self.facilities.get(ae))


def move_destinations(value: str | None) -> dict[str, tuple[str, int]]:
    """``AE=host:port,…`` (validated by Settings) as AE title -> (host, port)."""
    return parse_addresses(value, max_key=16)
