"""A Changsha demo district run under the Changsha profile (seed 001): 长沙市岳麓区, 2016学年第二学期 with the seed's
2017 timeline, two schools with graduating classes (one of 43 students, the size the quota tests use),
exam numbers (考号), and one account for every role of the profile: the district admin and leading group, the
city clerk who sets the quotas, each school's admin, principal and committee member, each class's homeroom
teacher and five class evaluators (taught the class since September 2015), every student and parent.

Rows go in with bulk INSERTs, like seed/demo.py; nothing of the workflow (committees, pledges, evidence,
ratings) is made here: that is what people do in the system. Deterministic for a given seed.
"""
from __future__ import annotations

import random

import sqlalchemy as sa

from models import City, District, RoleGrant, School, SchoolClass, Student, User, db
from seed import changsha
from seed.demo import PASSWORD, _insert, _name
from seed.loader import create_term, sync_profile

SCHOOLS = [("yl01", "长沙市岳麓区实验中学"), ("yl02", "长沙市岳麓区博才初级中学")]
# Graduating classes per school and their sizes.
CLASS_SIZES = {"yl01": [43, 40], "yl02": [38]}
STAFF_NAMES = ("谭志刚 李红霞 刘建军 彭丽 周海涛 罗敏 唐卫平 欧阳静 胡小兵 邓美玲 曾国华 贺芳 黄立新 蒋琴 易军 "
               "龙云 杨帆 肖玉兰 文斌 颜丽娟 陈建湘 廖晓燕 袁志勇 钟慧").split()


def seed_changsha(seed: int = 2017, class_sizes: dict | None = None) -> dict:
    """The district, its term and people; returns counts and ids. The caller commits."""
    rng = random.Random(seed)
    class_sizes = class_sizes or CLASS_SIZES
    profile = sync_profile(changsha)
    city = db.session.execute(sa.select(City).where(City.code == "cs")).scalar_one_or_none()
    if city is None:
        city = City(code="cs", name="长沙市")
        db.session.add(city)
    district = District(code="yl", name="岳麓区", city=city, settings={"max_open_appeals": 5})
    db.session.add(district)
    db.session.flush()
    term = create_term(district, profile, 2016, 2, changsha.SCHEDULE_2016_2, is_current=True)

    template = User(username="cs_template", display_name="-")
    template.set_password(PASSWORD)
    password_hash = template.password_hash
    users: list[dict] = []
    grants: list[dict] = []

    def account(username, display_name, role, **scope):
        users.append({"username": username, "display_name": display_name, "password_hash": password_hash,
                      "active": True})
        grants.append({"role": role, **scope})

    account("cs_admin", "岳麓区管理员", "district_admin", district_id=district.id)
    account("cs_leader", "岳麓区评价领导小组成员", "district_leading_group", district_id=district.id)
    account("cs_city", "长沙市中招办", "city_clerk", city_id=city.id)

    school_ids = _insert(School, [{"district_id": district.id, "code": c, "name": n, "homeroom_audit": False,
                                   "version_id": 1} for c, n in SCHOOLS if c in class_sizes])
    codes = [c for c, _n in SCHOOLS if c in class_sizes]
    class_rows, class_keys = [], []
    for code, sid in zip(codes, school_ids, strict=True):
        for number, _size in enumerate(class_sizes[code], start=1):
            class_rows.append({"school_id": sid, "grade": 9, "number": number})
            class_keys.append((code, sid, number))
    class_ids = _insert(SchoolClass, class_rows)

    student_rows, student_keys = [], []
    serial = 0
    for (code, sid, number), cid in zip(class_keys, class_ids, strict=True):
        for k in range(1, class_sizes[code][number - 1] + 1):
            serial += 1
            gender = "男" if rng.random() < 0.52 else "女"
            xjh = f"G430104{2002 + rng.randint(0, 1)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{serial:04d}"
            # 考号: year, district, school, class, seat.
            exam_number = f"1701{code[-2:]}{number:02d}{k:03d}"
            student_rows.append({"xjh": xjh, "name": _name(rng, gender), "gender": gender, "class_id": cid,
                                 "school_id": sid, "status": "enrolled", "exam_number": exam_number,
                                 "version_id": 1})
            student_keys.append((code, number, k))
    student_ids = _insert(Student, student_rows)

    staff = iter(STAFF_NAMES * 10)
    for code, sid in zip(codes, school_ids, strict=True):
        for suffix, role in (("admin", "school_admin"), ("principal", "principal"), ("committee", "school_committee"),
                             ("clerk", "school_clerk")):
            account(f"cs_{code}_{suffix}", next(staff), role, school_id=sid)
    for (code, _sid, number), cid in zip(class_keys, class_ids, strict=True):
        account(f"cs_{code}c{number}_teacher", next(staff), "homeroom_teacher", class_id=cid)
        for j in range(1, changsha.RULES["class_group_size"] + 1):
            account(f"cs_{code}c{number}_eval{j}", next(staff), "class_evaluator", class_id=cid)
    for (code, number, k), stid, row in zip(student_keys, student_ids, student_rows, strict=True):
        username = f"cs_{code}c{number}n{k:02d}"
        account(username, row["name"], "student", student_id=stid)
        account(f"p_{username}", f"{row['name']}家长", "parent", student_id=stid)
    user_ids = _insert(User, users)
    for grant, uid in zip(grants, user_ids, strict=True):
        grant["user_id"] = uid
    _insert(RoleGrant, grants)
    db.session.flush()
    return {"district_id": district.id, "term_id": term.id, "schools": len(school_ids), "classes": len(class_ids),
            "students": len(student_ids), "users": len(users)}
