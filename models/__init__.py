"""Models and the domain rules that belong to them; import from here."""
from models.accounts import RoleGrant, User
from models.archive import ArchiveEntry, SummaryUpload
from models.audit import AuditEvent
from models.base import db
from models.calendar import Cohort, PhaseWindow, Profile, Term
from models.cases import Case
from models.catalog import Activity, Category, Dimension
from models.changsha import (
                             Committee,
                             CommitteeMember,
                             Complaint,
                             EvidenceFile,
                             EvidenceItem,
                             MaterialReview,
                             PeerRating,
                             Pledge,
                             Quota,
                             QuotaAck,
                             Rating,
                             RatingFinal,
)
from models.contacts import Contact
from models.datapackage import DataPackage
from models.deadlines import DeadlineRun, Notification
from models.org import City, District, School, SchoolClass, Student
from models.records import Record

__all__ = [
    "Activity", "ArchiveEntry", "AuditEvent", "Case", "Category", "City", "Cohort", "Committee", "CommitteeMember", "Complaint", "Contact",
    "DataPackage",
    "DeadlineRun", "Dimension", "District", "EvidenceFile", "EvidenceItem", "MaterialReview", "Notification", "PeerRating", "Pledge",
    "Quota", "QuotaAck", "Rating", "RatingFinal", "PhaseWindow", "Profile", "Record", "RoleGrant", "School", "SchoolClass", "Student", "SummaryUpload", "Term", "User", "db",
]
