"""The Shanghai profile (seed 000: 宝山区 2021学年第一学期) as data: phases, dimensions, categories
and the term schedule. A new category is one more entry in CATEGORIES.

An entry rule ``{"level": "student", "review": ...}`` says whether the homeroom teacher sees a student's
entry before it is submitted for publication: "teacher" always (自我介绍/典型事例, SPEC §3),
"school_setting" when the school's 团、队等德育活动审核设置 is on (SPEC §4); absent: never."""
from __future__ import annotations

CODE = "shanghai"
NAME = "上海市初中学生综合素质评价"

PHASES = [
    {"code": "preparation", "name": "填报准备", "name_en": "Preparation"},
    {"code": "entry", "name": "填报", "name_en": "Entry"},
    {"code": "student_entry", "name": "学生填报", "name_en": "Student entry"},
    {"code": "confirmation", "name": "确认", "name_en": "Confirmation"},
    {"code": "correction", "name": "确认不通过数据修改", "name_en": "Correction of rejected data"},
    {"code": "publication", "name": "公示", "name_en": "Publication"},
    {"code": "issue_handling", "name": "问题处理", "name_en": "Issue handling"},
    {"code": "archive", "name": "归档签字", "name_en": "Archive and sign-off"},
]

DIMENSIONS = [
    {"code": "moral", "name": "品德发展与公民素养", "name_en": "Moral development and civic literacy"},
    {"code": "academic", "name": "修习课程与学业成绩", "name_en": "Courses and academic results"},
    {"code": "health_arts", "name": "身心健康与艺术素养", "name_en": "Physical and mental health, arts"},
    {"code": "innovation", "name": "创新精神与实践能力", "name_en": "Innovation and practice"},
    {"code": "self", "name": "自我介绍与典型事例", "name_en": "Self-introduction and typical case"},
]

ALL = [6, 7, 8, 9]
GRADE_LEVELS = ["优秀", "良好", "合格", "不合格"]
SUBJECTS = ["语文", "数学", "英语", "道德与法治", "历史", "地理", "物理", "化学", "生命科学", "科学",
            "信息科技", "音乐", "美术", "艺术", "体育与健身", "劳动技术"]
EXAM_SUBJECTS = ["地理", "生命科学", "信息科技", "物理", "化学", "道德与法治", "历史", "艺术", "体育与健身"]
AWARDS = ["一等奖", "二等奖", "三等奖", "优秀奖", "参与"]


def _f(name, label, label_en, type="text", required=True, **extra):
    return {"name": name, "label": label, "label_en": label_en, "type": type, "required": required, **extra}


def _activity_fields():
    return [
        _f("name", "活动名称", "Activity", max_length=100),
        _f("award", "获奖情况", "Award", "choice", choices=AWARDS),
        _f("held_on", "活动日期", "Date", "date"),
    ]


CATEGORIES = [
    # 品德发展与公民素养
    {"code": "eaglet_badge", "dimension": "moral", "name": "雏鹰争章", "name_en": "Eaglet badge",
     "grades": ALL, "entry": [{"level": "school"}], "per_year_limit": 1,
     "fields": [_f("badge", "章名", "Badge", max_length=50), _f("awarded_on", "获章日期", "Awarded on", "date")]},
    {"code": "honour_title", "dimension": "moral", "name": "先进个人荣誉称号", "name_en": "Honour title",
     "grades": ALL, "entry": [{"level": "school"}],
     "fields": [_f("title", "荣誉称号", "Title", max_length=100),
                _f("level", "级别", "Level", "choice", choices=["校级", "区级", "市级", "国家级"]),
                _f("issuer", "授予单位", "Issued by", max_length=100),
                _f("awarded_on", "授予日期", "Awarded on", "date")]},
    {"code": "defence_award", "dimension": "moral", "name": "校级国防、民防活动奖项",
     "name_en": "School defence / civil-defence award",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2, "fields": _activity_fields()},
    {"code": "moral_activity", "dimension": "moral", "name": "团、队等德育活动",
     "name_en": "League / pioneer moral-education activity",
     "grades": ALL, "entry": [{"level": "student", "review": "school_setting"}], "per_term_limit": 2,
     "fields": [_f("activity_id", "活动项目", "Activity", "activity"),
                _f("role", "参与情况", "Participation", max_length=100),
                _f("hours", "参与时长（小时）", "Hours", "int", required=False, min=0, max=200)]},
    # 修习课程与学业成绩
    {"code": "basic_course", "dimension": "academic", "name": "基础型课程成绩", "name_en": "Basic-course grades",
     "grades": ALL, "entry": [{"level": "school"}],
     "fields": [_f("subject", "科目", "Subject", "choice", choices=SUBJECTS),
                _f("result", "成绩等第", "Grade", "choice", choices=GRADE_LEVELS)]},
    {"code": "extended_course", "dimension": "academic", "name": "拓展型课程", "name_en": "Extended courses",
     "grades": ALL, "entry": [{"level": "school"}],
     "fields": [_f("course", "课程名称", "Course", max_length=100),
                _f("hours", "课时", "Hours", "int", min=1, max=200),
                _f("result", "评价等第", "Grade", "choice", choices=GRADE_LEVELS)]},
    {"code": "inquiry_course", "dimension": "academic", "name": "探究型课程", "name_en": "Inquiry courses",
     "grades": ALL, "entry": [{"level": "school"}],
     "fields": [_f("course", "课程名称", "Course", max_length=100),
                _f("topic", "探究课题", "Topic", max_length=200),
                _f("result", "评价等第", "Grade", "choice", choices=GRADE_LEVELS)]},
    {"code": "academic_exam", "dimension": "academic", "name": "学业水平考试结果", "name_en": "Academic-level exam results",
     "grades": ALL,
     "entry": [{"level": "district"}, {"level": "school", "grades": [9], "where": {"subject": ["艺术"]}}],
     "fields": [_f("subject", "科目", "Subject", "choice", choices=EXAM_SUBJECTS),
                _f("result", "考试结果", "Result", "choice", choices=["合格", "不合格", "优秀", "良好"])]},
    # 身心健康与艺术素养
    {"code": "sports", "dimension": "health_arts", "name": "校级体育比赛", "name_en": "School sports competitions",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2, "fields": _activity_fields()},
    {"code": "health_activity", "dimension": "health_arts", "name": "校级健康教育活动",
     "name_en": "School health-education activities",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2,
     "fields": [_f("name", "活动名称", "Activity", max_length=100),
                _f("content", "活动内容", "Content", "textarea", required=False, max_length=500),
                _f("held_on", "活动日期", "Date", "date")]},
    {"code": "arts_activity", "dimension": "health_arts", "name": "校级艺术活动", "name_en": "School arts activities",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2, "fields": _activity_fields()},
    {"code": "arts_troupe", "dimension": "health_arts", "name": "参加校级学生艺术团队名称",
     "name_en": "School arts troupes joined",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2,
     "fields": [_f("troupe", "艺术团队名称", "Troupe", max_length=100),
                _f("role", "担任角色", "Role", max_length=50, required=False)]},
    # 创新精神与实践能力
    {"code": "science_activity", "dimension": "innovation", "name": "校级科技活动项目",
     "name_en": "School science and technology activities",
     "grades": ALL, "entry": [{"level": "school"}], "per_term_limit": 2, "fields": _activity_fields()},
    {"code": "inquiry_report", "dimension": "innovation", "name": "探究学习报告", "name_en": "Inquiry learning report",
     "grades": [9], "entry": [{"level": "school"}, {"level": "student"}],
     "fields": [_f("title", "报告题目", "Title", max_length=200),
                _f("tutor", "指导教师", "Tutor", max_length=50, required=False),
                _f("summary", "报告摘要", "Summary", "textarea", max_length=2000)]},
    # Student-written, reviewed by the homeroom teacher
    {"code": "self_intro", "dimension": "self", "name": "自我介绍", "name_en": "Self-introduction",
     "grades": [9], "entry": [{"level": "student", "review": "teacher"}], "per_term_limit": 1,
     "fields": [_f("content", "自我介绍", "Self-introduction", "textarea", max_length=2000)]},
    {"code": "typical_case", "dimension": "self", "name": "典型事例", "name_en": "Typical case",
     "grades": [6, 7, 8], "entry": [{"level": "student", "review": "teacher"}], "per_term_limit": 1,
     "fields": [_f("title", "事例标题", "Title", max_length=100),
                _f("content", "事例内容", "Content", "textarea", max_length=2000)]},
]

# 2021学年第一学期 (SPEC §2), Beijing time; windows are [start, end).
_COMMON = {
    "preparation": ("2022-02-28 08:00", "2022-03-14 08:00"),
    "entry": ("2022-02-28 08:00", "2022-03-21 16:00"),
    "student_entry": ("2022-02-28 08:00", "2022-03-30 08:00"),
    "confirmation": ("2022-03-22 08:00", "2022-03-28 16:00"),
    "correction": ("2022-03-22 08:00", "2022-03-29 16:00"),
    "publication": ("2022-03-30 08:00", "2022-04-07 16:00"),
}
SCHEDULE_2021_1 = {
    "g9": {
        "name": "九年级", "grades": [9],
        "windows": {**_COMMON,
                    "issue_handling": ("2022-03-30 08:00", "2022-04-12 16:00"),
                    "archive": ("2022-04-13 08:00", "2022-05-10 16:00")},
    },
    "g6_8": {
        "name": "六至八年级", "grades": [6, 7, 8],
        "windows": {**_COMMON, "issue_handling": ("2022-03-30 08:00", "2022-05-27 16:00")},
    },
}
# 附件3 is due "2022年2月28日前": before that day begins, Beijing time.
CONTACTS_DUE = "2022-02-28 00:00"
