"""The demo district: a Baoshan-like district with 3 schools, grades 6–9, 2 classes per grade,
30 students per class, records in every category, and one account for every role.

Deterministic for a given seed. Rows go in with bulk INSERTs (not ORM objects one by one), so a
district of this size seeds in seconds. The bulk-inserted rows (students, accounts, grants, records,
activities, contacts) write no audit events; the few rows saved through the ORM (profile, categories,
city, district, term, cohorts, windows) are recorded as created by 系统, like any other change.
"""
from __future__ import annotations

import random
from datetime import date, timedelta

import sqlalchemy as sa

from models import (
    Activity,
    Category,
    City,
    Contact,
    District,
    Record,
    RoleGrant,
    School,
    SchoolClass,
    Student,
    User,
    db,
)
from models.fields import validate_data
from seed import shanghai
from seed.loader import create_term, sync_profile

PASSWORD = "cqe2022"
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
            "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤")
GIVEN_BOY = "浩宇轩然博文杰俊泽睿豪晨阳天明辉伟强磊鹏涛远嘉皓铭宸逸瑞霖煜航志诚昊凯毅"
GIVEN_GIRL = "欣怡梓涵诗雨佳琪思婷雅静悦可馨晓萱若瑶佩玲嘉颖梦洁婉清芷珊蕾璐"
SCHOOLS = [
    ("bs01", "上海市宝山区第一中学"),
    ("bs02", "上海市宝山区育才初级中学"),
    ("bs03", "上海市宝山区明德实验学校"),
]
STAFF_NAMES = "周建国 陈丽华 王志强 李秀英 张卫东 刘海燕 杨晓明 赵红梅 孙建平 吴敏 徐立新 朱春燕 胡伟 郭静 何俊 高峰".split()
NON_PARTICIPANT = ("left", "suspended", "transferred")


def _name(rng: random.Random, gender: str) -> str:
    pool = GIVEN_BOY if gender == "男" else GIVEN_GIRL
    given = rng.choice(pool) + (rng.choice(pool) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


def _insert(model, rows: list[dict]) -> list[int]:
    """Bulk INSERT, returning the new ids in row order."""
    if not rows:
        return []
    result = db.session.execute(sa.insert(model).returning(model.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result]


def _day(rng: random.Random) -> str:
    start = date(2021, 9, 1)
    return (start + timedelta(days=rng.randrange(0, 170))).isoformat()


_ACTIVITY_NAMES = {
    "defence_award": ["国防知识竞赛", "民防应急疏散演练", "少年军校训练营"],
    "sports": ["校运动会", "校园篮球联赛", "定向越野赛", "跳绳比赛"],
    "health_activity": ["心理健康讲座", "青春期健康教育", "食品安全主题班会", "急救知识培训"],
    "arts_activity": ["校园合唱节", "艺术节书画展", "课本剧展演"],
    "science_activity": ["校科技节展评", "机器人创意赛", "小发明小制作"],
}


def _value(rng: random.Random, code: str, spec: dict, activities: list[int], where: dict | None = None):
    kind = spec["type"]
    if code == "inquiry_report" and spec["name"] == "title":
        return rng.choice(["社区垃圾分类调查报告", "校园植物多样性研究", "宝山老街的变迁", "家庭节水方案研究"])
    if spec["name"] == "name" and code in _ACTIVITY_NAMES:
        return rng.choice(_ACTIVITY_NAMES[code])
    if code == "typical_case" and spec["name"] == "title":
        return rng.choice(["我当小小志愿者", "一次难忘的班会", "运动会上的坚持"])
    if where and spec["name"] in where:
        return rng.choice(where[spec["name"]])
    if kind == "choice":
        return rng.choice(spec["choices"])
    if kind == "date":
        return _day(rng)
    if kind == "int":
        return rng.randint(max(spec.get("min", 1), 1), min(spec.get("max", 40), 40))
    if kind == "activity":
        return rng.choice(activities)
    samples = {
        "badge": ["环保章", "科技章", "阅读章", "志愿服务章", "文明礼仪章"],
        "title": ["三好学生", "优秀学生干部", "文明学生", "优秀少先队员", "优秀团员"],
        "issuer": ["学校", "宝山区教育局", "共青团宝山区委"],
        "name": ["校运动会", "国防知识竞赛", "合唱节", "科技节展评", "心理健康讲座", "民防演练", "定向越野"],
        "role": ["参与者", "组织者", "志愿者", "队长"],
        "course": ["创意编程", "书法", "围棋", "生活中的化学", "城市探究", "英语戏剧"],
        "topic": ["社区垃圾分类调查", "校园植物图鉴", "宝山老街的变迁", "家庭用水情况调查"],
        "troupe": ["学生合唱团", "民乐团", "舞蹈队", "话剧社"],
        "tutor": ["周老师", "陈老师", "王老师"],
        "content": ["本学期我积极参加班级活动，担任小组长，学习上认真踏实。", "在志愿服务中我学会了与人沟通和合作。"],
        "summary": ["本报告调查了所在社区的垃圾分类执行情况，提出了三条改进建议。"],
    }
    return rng.choice(samples.get(spec["name"], ["示例"]))


def _record_plan(rng: random.Random, category: Category, grade: int) -> list[tuple[str, dict | None]]:
    """Which records of a category one student gets: a list of (origin level, where-constraint)."""
    code = category.code
    if code == "basic_course":
        return [("school", {"subject": [s]}) for s in ("语文", "数学", "英语")]
    if code == "academic_exam":
        plan = []
        if grade == 9:
            plan.append(("school", {"subject": ["艺术"]}))
            plan += [("district", {"subject": [s]}) for s in rng.sample(["地理", "生命科学", "信息科技"], 2)]
        elif rng.random() < 0.5:
            plan.append(("district", {"subject": ["地理" if grade == 7 else "信息科技"]}))
        return plan
    chance = {
        "eaglet_badge": 0.5, "honour_title": 0.2, "defence_award": 0.3, "moral_activity": 0.6,
        "extended_course": 0.9, "inquiry_course": 0.5, "sports": 0.35, "health_activity": 0.3,
        "arts_activity": 0.3, "arts_troupe": 0.2, "science_activity": 0.3, "inquiry_report": 0.6,
        "self_intro": 0.7, "typical_case": 0.6,
    }.get(code, 0.3)
    if rng.random() >= chance:
        return []
    count = 1
    if category.per_term_limit and category.per_term_limit > 1 and rng.random() < 0.3:
        count = category.per_term_limit
    levels = [r["level"] for r in category.entry if grade in r.get("grades", category.grades) and not r.get("where")]
    return [(rng.choice(levels), None) for _ in range(count)]


def seed_demo(students_per_class: int = 30, seed: int = 2022) -> dict:
    rng = random.Random(seed)
    profile = sync_profile(shanghai)
    city = City(code="sh", name="上海市")
    district = District(code="bs", name="宝山区", city=city,
                        settings={"max_open_appeals": 5, "contacts_due": "2022-02-28T00:00:00+08:00"})
    db.session.add_all([city, district])
    db.session.flush()
    term = create_term(district, profile, 2021, 1, shanghai.SCHEDULE_2021_1, is_current=True)

    template = User(username="admin", display_name="宝山区管理员")
    template.set_password(PASSWORD)
    password_hash = template.password_hash
    users: list[dict] = []
    grants: list[dict] = []
    showcase: list[tuple[str, str, str]] = []

    def account(username, display_name, role, **scope):
        users.append({"username": username, "display_name": display_name, "password_hash": password_hash,
                      "active": True})
        grants.append({"role": role, **scope})

    account("admin", "宝山区管理员", "district_admin", district_id=district.id)
    account("district_clerk", "区级录入员", "district_clerk", district_id=district.id)
    account("district_auditor", "区级审核员", "district_auditor", district_id=district.id)
    account("city_clerk", "市级录入员", "city_clerk", city_id=city.id)
    account("city_auditor", "市级审核员", "city_auditor", city_id=city.id)

    school_ids = _insert(School, [{"district_id": district.id, "code": c, "name": n, "homeroom_audit": True,
                                   "version_id": 1} for c, n in SCHOOLS])
    class_rows, class_keys = [], []
    for n, sid in enumerate(school_ids, start=1):
        for grade in (6, 7, 8, 9):
            for number in (1, 2):
                class_rows.append({"school_id": sid, "grade": grade, "number": number})
                class_keys.append((n, sid, grade, number))
    class_ids = _insert(SchoolClass, class_rows)

    student_rows, student_keys = [], []
    serial = 0
    for (n, sid, grade, number), cid in zip(class_keys, class_ids, strict=True):
        born = 2016 - grade
        for k in range(1, students_per_class + 1):
            serial += 1
            gender = "男" if rng.random() < 0.52 else "女"
            status = "enrolled"
            if number == 2 and k == students_per_class and students_per_class > 2:
                status = NON_PARTICIPANT[(n + grade) % 3]
            xjh = f"G310113{born}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{serial:04d}"
            student_rows.append({"xjh": xjh, "name": _name(rng, gender), "gender": gender, "class_id": cid,
                                 "school_id": sid, "status": status, "version_id": 1})
            student_keys.append((n, sid, grade, number, k))
    student_ids = _insert(Student, student_rows)

    staff_names = iter(STAFF_NAMES * 20)
    for n, sid in enumerate(school_ids, start=1):
        for suffix, role in (("leader", "school_leader"), ("admin", "school_admin"), ("clerk", "school_clerk"),
                             ("auditor", "school_auditor"), ("principal", "principal")):
            account(f"s{n}_{suffix}", next(staff_names), role, school_id=sid)
    for (n, _sid, grade, number), cid in zip(class_keys, class_ids, strict=True):
        account(f"s{n}_g{grade}c{number}_teacher", next(staff_names), "homeroom_teacher", class_id=cid)
        if (n, grade, number) == (1, 9, 1):
            account("s1_g9c1_evaluator", next(staff_names), "class_evaluator", class_id=cid)
    student_user_index = {}
    for (n, _sid, grade, number, k), stid, row in zip(student_keys, student_ids, student_rows, strict=True):
        username = f"s{n}g{grade}c{number}n{k:02d}"
        student_user_index[stid] = len(users)
        account(username, row["name"], "student", student_id=stid)
        account(f"p_{username}", f"{row['name']}家长", "parent", student_id=stid)
    user_ids = _insert(User, users)
    for grant, uid in zip(grants, user_ids, strict=True):
        grant["user_id"] = uid
    _insert(RoleGrant, grants)
    uid_of = dict(zip((u["username"] for u in users), user_ids, strict=True))

    # Activity catalogues: the district's and each school's (校级/区级项目管理).
    acts = [{"term_id": term.id, "level": "district", "district_id": district.id, "school_id": None, "name": name,
             "organiser": "宝山区教育局", "held_on": date(2022, 3, d), "description": "", "version_id": 1}
            for name, d in (("宝山区青少年志愿服务月", 5), ("区红领巾寻访活动", 12), ("区十四岁集体生日", 19))]
    for sid in school_ids:
        acts += [{"term_id": term.id, "level": "school", "district_id": district.id, "school_id": sid, "name": name,
                  "organiser": "校团委", "held_on": date(2022, 3, d), "description": "", "version_id": 1}
                 for name, d in (("学雷锋志愿服务", 5), ("清明祭扫", 30), ("团队主题日", 15))]
    act_ids = _insert(Activity, acts)
    acts_of_school = {sid: [i for i, a in zip(act_ids, acts, strict=True) if a["school_id"] in (sid, None)] for sid in school_ids}

    contacts = []
    for sid in school_ids:
        for j, kind in enumerate(("leader", "admin", "auditor", "clerk")):
            contacts.append({"school_id": sid, "kind": kind, "name": next(staff_names),
                             "position": ["副校长", "教导主任", "德育主任", "信息老师"][j],
                             "mobile": f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}",
                             "qq": str(rng.randint(10000000, 999999999)), "notes": "",
                             "is_main": kind == "admin", "version_id": 1})
    _insert(Contact, contacts)

    categories = db.session.execute(sa.select(Category).where(Category.profile_id == profile.id)
                                    .order_by(Category.position)).scalars().all()
    clerk_of = {"district": uid_of["district_clerk"], "city": uid_of["city_clerk"]}
    records = []
    for (n, sid, grade, _number, _k), stid, row in zip(student_keys, student_ids, student_rows, strict=True):
        if row["status"] != "enrolled":
            continue  # non-participants get no records
        for cat in categories:
            if grade not in cat.grades:
                continue
            for level, where in _record_plan(rng, cat, grade):
                data = {f["name"]: _value(rng, cat.code, f, acts_of_school[sid], where) for f in cat.fields}
                data = validate_data(cat.fields, data)
                entered_by = (uid_of[f"s{n}_clerk"] if level == "school" else
                              user_ids[student_user_index[stid]] if level == "student" else clerk_of[level])
                records.append({"term_id": term.id, "category_id": cat.id, "student_id": stid, "school_id": sid,
                                "origin": level, "entered_by_id": entered_by,
                                "state": "draft" if level == "student" else "entered", "data": data,
                                "version_id": 1})
    for start in range(0, len(records), 5000):
        db.session.execute(sa.insert(Record), records[start:start + 5000])
    db.session.flush()

    showcase = [("admin", "区级管理员", "宝山区"), ("s1_clerk", "校级录入员", SCHOOLS[0][1]),
                ("s1g9c1n01", "学生", "九年级(1)班")]
    return {"schools": len(school_ids), "classes": len(class_ids), "students": len(student_ids),
            "users": len(user_ids), "activities": len(act_ids), "records": len(records), "showcase": showcase}
