"""The Changsha profile (seed 001: 2017年长沙市城区初中毕业生综合素质评价工作进程表) as data: phases on the
seed's 2017 timeline, the six dimensions, the imported results and the self-evaluation as record categories,
the 23 evidence items, the grade levels, the committee rules and the integrity pledge.

The seed names the 23 items only by reference (附件4, "实证材料数量、名称、格式"); the list below is this
profile's reading of it, one line per item, and a district replaces it by editing EVIDENCE_ITEMS."""
from __future__ import annotations

CODE = "changsha"
NAME = "长沙市初中毕业生综合素质评价"

# In the order of the seed's timeline (进程表).
PHASES = [
    {"code": "organisation", "name": "机构设立与整章建制", "name_en": "Committees and rules"},
    {"code": "training", "name": "培训与签诚信承诺书", "name_en": "Training and integrity pledges"},
    {"code": "evidence", "name": "实证材料完善整理", "name_en": "Evidence portfolio"},
    {"code": "results_import", "name": "考查成绩与数据导入", "name_en": "Exam results and data import"},
    {"code": "self_peer", "name": "学生自评、教师审核、学生互评", "name_en": "Self-evaluation, teacher review, peer evaluation"},
    {"code": "first_upload", "name": "电子档案上传市数据中心", "name_en": "Upload to the city data centre"},
    {"code": "quota_setting", "name": "市评价小组维度插标", "name_en": "City sets the quotas"},
    {"code": "quota_release", "name": "下发插标比例，学校复核", "name_en": "Quotas sent; schools check"},
    {"code": "teacher_evaluation", "name": "教师评价", "name_en": "Teacher evaluation"},
    {"code": "final_upload", "name": "最终评价数据上报", "name_en": "Final upload"},
    {"code": "results", "name": "公布评价结果", "name_en": "Results published"},
]

DIMENSIONS = [
    {"code": "moral", "name": "道德品质", "name_en": "Moral character"},
    {"code": "civic", "name": "公民素养", "name_en": "Civic literacy"},
    {"code": "learning", "name": "学习能力", "name_en": "Learning ability"},
    {"code": "cooperation", "name": "交流与合作", "name_en": "Communication and cooperation"},
    {"code": "health", "name": "运动与健康", "name_en": "Sport and health"},
    {"code": "aesthetics", "name": "审美与表现", "name_en": "Aesthetics and expression"},
]

# Grade levels of the ratings (teacher and peer evaluation), best first, with their descriptors.
LEVELS = [
    {"code": "A", "name": "A（优秀）", "name_en": "A (excellent)"},
    {"code": "B", "name": "B（良好）", "name_en": "B (good)"},
    {"code": "C", "name": "C（合格）", "name_en": "C (pass)"},
    {"code": "D", "name": "D（待合格）", "name_en": "D (not yet passed)"},
]
ORAL_LEVELS = ["A", "B", "C", "D"]

PLEDGE_TEXT = (
    "本人作为2017年长沙市初中毕业生综合素质评价的评价人员，郑重承诺：\n"
    "一、认真学习综合素质评价实施办法、等级标准和操作流程，按规定程序开展评价；\n"
    "二、坚持公平、公正、公开，实事求是地审核学生实证材料，客观评价每一名学生；\n"
    "三、不弄虚作假，不徇私舞弊，不泄露未公布的评价信息和学生个人信息；\n"
    "四、自觉接受学生、家长和社会的监督，如有违反，愿承担相应责任。"
)

RULES = {
    "levels": LEVELS,
    "pledge_text": PLEDGE_TEXT,
    # 班级评价小组：5位该班任课1年以上教师；学校评价委员会：选举家长代表2名；名单公示3-5个工作日。
    "class_group_size": 5,
    "class_group_min_teaching_days": 365,
    "parent_representatives": 2,
    "publication_working_days": [3, 5],
    # The record workflow's generic phases, by this profile's names: the school enters or imports the exam
    # results while they come in; students write their self-evaluation with the rest of 自评/互评.
    "phase_of": {"entry": "results_import", "student_entry": "self_peer"},
}


def _f(name, label, label_en, type="text", required=True, **extra):
    return {"name": name, "label": label, "label_en": label_en, "type": type, "required": required, **extra}


G9 = [9]
# Imported results (seed: 5月10日前相关数据导入系统; 口语、实验、艺术考查成绩) are records the school clerk enters or
# imports from xlsx, like every clerk-entered category; the self-evaluation is the student's own entry.
CATEGORIES = [
    {"code": "cs_oral_chinese", "dimension": "cooperation", "name": "语文口语交际考查", "name_en": "Chinese oral exam",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 1,
     "fields": [_f("level", "等级", "Level", "choice", choices=ORAL_LEVELS)]},
    {"code": "cs_oral_english", "dimension": "cooperation", "name": "英语口语考查", "name_en": "English oral exam",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 1,
     "fields": [_f("level", "等级", "Level", "choice", choices=ORAL_LEVELS)]},
    {"code": "cs_lab_exam", "dimension": "learning", "name": "理科实验操作考查", "name_en": "Science lab exam",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 3,
     "fields": [_f("subject", "学科", "Subject", "choice", choices=["物理", "化学", "生物"]),
                _f("score", "成绩（分）", "Score", "int", min=0, max=100)]},
    {"code": "cs_stage_exam", "dimension": "learning", "name": "三年阶段性学业考试成绩总等第",
     "name_en": "Three-year stage exams, overall grade",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 6,
     "fields": [_f("stage", "学期", "Term", "choice",
                   choices=["七年级上", "七年级下", "八年级上", "八年级下", "九年级上", "九年级下"]),
                _f("level", "总等第", "Overall grade", "choice", choices=["A", "B", "C", "D", "E"])]},
    {"code": "cs_pe_score", "dimension": "health", "name": "体育平时考查成绩", "name_en": "PE coursework score",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 1,
     "fields": [_f("score", "成绩（分）", "Score", "int", min=0, max=100)]},
    {"code": "cs_art_exam", "dimension": "aesthetics", "name": "艺术统一考查", "name_en": "Art exam",
     "grades": G9, "entry": [{"level": "school"}], "per_term_limit": 1,
     "fields": [_f("level", "等级", "Level", "choice", choices=["A", "B", "C", "D"])]},
    {"code": "cs_self_evaluation", "dimension": "moral", "name": "学生自评", "name_en": "Self-evaluation",
     "grades": G9, "entry": [{"level": "student"}], "per_term_limit": 1,
     "fields": [_f("text", "自我评价", "Self-evaluation", "textarea", max_length=800)]},
]

PDF_IMG = ["pdf", "jpeg", "png"]
IMG = ["jpeg", "png"]
MB = 1024 * 1024


def _item(code, dimension, name, name_en, formats=PDF_IMG, min_files=1, max_files=1, max_mb=2):
    return {"code": code, "dimension": dimension, "name": name, "name_en": name_en, "formats": list(formats),
            "min_files": min_files, "max_files": max_files, "max_bytes": max_mb * MB}


# 档案袋23条实证材料: name, how many files, which formats (checked by content), the size cap per file.
EVIDENCE_ITEMS = [
    _item("e01", "moral", "思想品德课程学业成绩记录", "Ethics course results"),
    _item("e02", "moral", "遵守中学生日常行为规范情况", "Code of conduct record"),
    _item("e03", "moral", "诚信记录", "Integrity record"),
    _item("e04", "moral", "志愿服务记录", "Volunteer service", max_files=3),
    _item("e05", "civic", "社会实践活动记录", "Social practice", min_files=2, max_files=4),
    _item("e06", "civic", "班团队活动参与记录", "Class and league activities", min_files=1, max_files=3),
    _item("e07", "civic", "公益劳动记录", "Community work"),
    _item("e08", "civic", "安全与法治教育记录", "Safety and law education"),
    _item("e09", "learning", "学科学习成果（作业、作品）", "Subject work", min_files=2, max_files=4, max_mb=5),
    _item("e10", "learning", "研究性学习报告", "Inquiry report", formats=["pdf"], max_mb=5),
    _item("e11", "learning", "理科实验操作考查记录", "Science lab exam record"),
    _item("e12", "learning", "课外阅读记录", "Reading record"),
    _item("e13", "learning", "学科竞赛或科技创新活动记录", "Competitions and innovation", max_files=3),
    _item("e14", "cooperation", "小组合作学习记录", "Group learning"),
    _item("e15", "cooperation", "班级或学校活动组织记录", "Organising activities"),
    _item("e16", "cooperation", "语文口语交际考查记录", "Chinese oral exam record"),
    _item("e17", "cooperation", "英语口语考查记录", "English oral exam record"),
    _item("e18", "health", "体育平时考查成绩记录", "PE coursework record"),
    _item("e19", "health", "国家学生体质健康标准测试成绩", "Physical fitness test"),
    _item("e20", "health", "心理健康教育活动记录", "Mental-health education"),
    _item("e21", "health", "体育活动或比赛记录", "Sport activities and competitions", max_files=3),
    _item("e22", "aesthetics", "艺术考查成绩记录", "Art exam record"),
    _item("e23", "aesthetics", "艺术作品或展演记录", "Artwork or performance", formats=IMG, max_files=3, max_mb=5),
]
assert len(EVIDENCE_ITEMS) == 23

# The seed's 2017 timeline for the graduating grade (2016学年第二学期), Beijing time, windows [start, end).
# "X日前" is read as "before day X begins", as in the Shanghai profile.
SCHEDULE_2016_2 = {
    "g9": {
        "name": "初三毕业年级", "grades": [9],
        "windows": {
            "organisation": ("2017-03-01 00:00", "2017-04-03 00:00"),   # 4月2日前
            "training": ("2017-04-02 00:00", "2017-04-03 00:00"),       # 4月2日
            "evidence": ("2017-04-03 00:00", "2017-05-21 00:00"),       # 4月3日—5月20日
            "results_import": ("2017-04-24 00:00", "2017-05-21 00:00"),  # 4月24日上报 … 5月10日前导入, 5月12日艺术
            "self_peer": ("2017-05-10 00:00", "2017-05-24 00:00"),      # 5月24日前
            "first_upload": ("2017-05-26 00:00", "2017-05-28 00:00"),   # 5月26—27日
            "quota_setting": ("2017-06-01 00:00", "2017-06-08 00:00"),  # 6月1—7日
            "quota_release": ("2017-06-14 00:00", "2017-06-17 00:00"),  # 6月14日下发，学校接受并复核
            "teacher_evaluation": ("2017-06-17 00:00", "2017-06-24 00:00"),  # 6月17—23日
            "final_upload": ("2017-06-26 00:00", "2017-06-28 00:00"),   # 6月26—27日
            "results": ("2017-07-03 00:00", "2018-07-01 00:00"),        # 7月3日公布
        },
    },
}
