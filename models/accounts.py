"""Accounts and their role grants: each grant binds one role to one scope (SPEC §1)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import TimestampMixin, UTCDateTime, db
from models.passwords import hash_password, needs_rehash, verify_password
from models.roles import ROLES


class User(UserMixin, TimestampMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(64))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set on accounts created with an initial password (register import, account slips): the holder must
    # choose their own password before using anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    mobile: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)  # parents' 家长手机 from the register
    # Lock-out (views/auth.py): consecutive failed logins, and until when the account refuses logins.
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Part of the id kept in session and remember-me cookies: a new password ends every other session.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    grants = relationship("RoleGrant", back_populates="user", cascade="all, delete-orphan", lazy="selectin")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    def set_password(self, password: str) -> None:
        """Set a new password; sessions and remember-me cookies issued under the old one stop working."""
        self.password_hash = hash_password(password)
        self.session_version = (self.session_version or 0) + 1

    def get_id(self) -> str:  # Flask-Login: what the session and the remember-me cookie hold
        return f"{self.id}.{self.session_version or 0}"

    def is_locked(self, at: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > at

    def check_password(self, password: str) -> bool:
        return verify_password(self.password_hash, password)

    def upgrade_password_hash(self, password: str) -> bool:
        """After a successful check: store the verified password under the current hash scheme when the stored
        hash is of an older one (models/passwords.py). Sessions stay valid: the password has not changed."""
        if not needs_rehash(self.password_hash):
            return False
        self.password_hash = hash_password(password)
        return True

    @property
    def roles(self) -> set[str]:
        return {g.role for g in self.grants}

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def __str__(self) -> str:
        return f"{self.display_name}（{self.username}）"


class RoleGrant(db.Model):
    """One role on one scope. Exactly the column matching the role's scope kind is set."""

    __tablename__ = "role_grants"
    __table_args__ = (
        sa.CheckConstraint(
            "(CASE WHEN city_id IS NULL THEN 0 ELSE 1 END + CASE WHEN district_id IS NULL THEN 0 ELSE 1 END"
            " + CASE WHEN school_id IS NULL THEN 0 ELSE 1 END + CASE WHEN class_id IS NULL THEN 0 ELSE 1 END"
            " + CASE WHEN student_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_scope",
        ),
        sa.UniqueConstraint("user_id", "role", "city_id", "district_id", "school_id", "class_id", "student_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    city_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cities.id"), nullable=True)
    district_id: Mapped[int | None] = mapped_column(sa.ForeignKey("districts.id"), nullable=True)
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), nullable=True, index=True)
    class_id: Mapped[int | None] = mapped_column(sa.ForeignKey("classes.id"), nullable=True)
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id"), nullable=True, index=True)
    user = relationship("User", back_populates="grants")
    city = relationship("City")
    district = relationship("District")
    school = relationship("School")
    school_class = relationship("SchoolClass")
    student = relationship("Student")

    @property
    def scope_kind(self) -> str:
        return ROLES[self.role].scope

    @property
    def scope_id(self) -> int:
        return {
            "city": self.city_id,
            "district": self.district_id,
            "school": self.school_id,
            "class": self.class_id,
            "student": self.student_id,
        }[self.scope_kind]

    @property
    def scope_object(self):
        return {
            "city": self.city,
            "district": self.district,
            "school": self.school,
            "class": self.school_class,
            "student": self.student,
        }[self.scope_kind]

    def __str__(self) -> str:
        return f"{ROLES[self.role].name} · {self.scope_object}"
