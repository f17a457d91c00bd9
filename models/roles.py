"""The roles of SPEC §1: what each is called and the kind of scope it is granted on."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    code: str
    name: str  # Chinese, shown by default
    name_en: str
    scope: str  # city | district | school | class | student


ROLES: dict[str, Role] = {
    r.code: r
    for r in [
        Role("district_admin", "区级管理员", "District admin", "district"),
        Role("city_clerk", "市级录入员", "City clerk", "city"),
        Role("city_auditor", "市级审核员", "City auditor", "city"),
        Role("district_clerk", "区级录入员", "District clerk", "district"),
        Role("district_auditor", "区级审核员", "District auditor", "district"),
        Role("school_leader", "校分管领导", "School leader", "school"),
        Role("school_admin", "校级管理员", "School admin", "school"),
        Role("school_clerk", "校级录入员", "School clerk", "school"),
        Role("school_auditor", "校级审核员", "School auditor", "school"),
        Role("principal", "校长", "Principal", "school"),
        Role("homeroom_teacher", "班主任", "Homeroom teacher", "class"),
        Role("class_evaluator", "班级评价小组成员", "Class evaluator", "class"),
        # Changsha (SPEC §8): members of the school's evaluation committee and of the district's leading group.
        Role("school_committee", "学校评价委员会成员", "School evaluation committee member", "school"),
        Role("district_leading_group", "区评价领导小组成员", "District leading group member", "district"),
        Role("student", "学生", "Student", "student"),
        Role("parent", "家长", "Parent", "student"),
    ]
}

# Which clerk role enters the data of an origin level.
CLERK_OF_LEVEL = {"school": "school_clerk", "district": "district_clerk", "city": "city_clerk", "student": "student"}
LEVEL_NAMES = {"school": "校级", "district": "区级", "city": "市级", "student": "学生"}
