"""Repositories over one transaction; ``Store.read()``/``Store.write()`` hand one out."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from huizhen.integration.crypto import KeyRing
from huizhen.integration.repo.audit import AuditTrail
from huizhen.integration.repo.breakglass import BreakGlassGrants
from huizhen.integration.repo.cases import Escalations, TeachingCases
from huizhen.integration.repo.clinical import Clinical
from huizhen.integration.repo.consultations import Consultations
from huizhen.integration.repo.directory import Directory
from huizhen.integration.repo.imaging import Imaging
from huizhen.integration.repo.journal import Journal
from huizhen.integration.repo.outbox import Outbox
from huizhen.integration.repo.patients import Patients
from huizhen.integration.repo.rbac import RbacRules


class Repository:
    def __init__(self, conn: AsyncConnection, keyring: KeyRing, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.directory = Directory(conn, keyring, dialect)
        self.patients = Patients(conn, keyring, dialect)
        self.clinical = Clinical(conn, keyring, dialect)
        self.consultations = Consultations(conn, keyring, dialect)
        self.journal = Journal(conn, keyring, dialect)
        self.audit = AuditTrail(conn, keyring, dialect)
        self.outbox = Outbox(conn, keyring, dialect)
        self.imaging = Imaging(conn, keyring, dialect)
        self.cases = TeachingCases(conn, keyring, dialect)
        self.escalations = Escalations(conn, keyring, dialect)
        self.rbac = RbacRules(conn, keyring, dialect)
        self.break_glass = BreakGlassGrants(conn, keyring, dialect)


__all__ = ["Repository"]
