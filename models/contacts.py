"""The district's contact sheet (附件3): per school, per contact category."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import TimestampMixin, db

CONTACT_KINDS = {"leader": "校分管领导", "admin": "校管理员", "auditor": "校审核员", "clerk": "校录入员"}


class Contact(TimestampMixin, db.Model):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(64))
    position: Mapped[str] = mapped_column(sa.String(64), default="")
    mobile: Mapped[str] = mapped_column(sa.String(20), default="")
    qq: Mapped[str] = mapped_column(sa.String(20), default="")
    notes: Mapped[str] = mapped_column(sa.String(255), default="")
    is_main: Mapped[bool] = mapped_column(default=False)
    version_id: Mapped[int] = mapped_column(default=1)
    school = relationship("School")

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def kind_name(self) -> str:
        return CONTACT_KINDS.get(self.kind, self.kind)

    def __str__(self) -> str:
        return f"{self.school.name} · {self.kind_name} · {self.name}"
