"""Chinese by default; English switchable for the project's pages and Flask-Admin's own."""
from __future__ import annotations


def test_login_page_chinese_by_default_english_on_request(client):
    assert "登录" in client.get("/login").get_data(as_text=True)
    english = client.get("/login?lang=en").get_data(as_text=True)
    assert "Log in" in english and "Username" in english


def test_admin_pages_switch_language(client, login_as, at):
    at("2022-03-25 09:00")
    login_as("s1_clerk")
    zh = client.get("/admin/records/sports/").get_data(as_text=True)
    assert "列表" in zh and "活动名称" in zh and "校级体育比赛" in zh
    en = client.get("/admin/records/sports/?lang=en").get_data(as_text=True)
    assert "List" in en and "Activity" in en and "School sports competitions" in en
    home = client.get("/admin/").get_data(as_text=True)  # the choice sticks for the session
    assert "Current phase" in home and "Confirmation" in home
    assert "当前阶段" in client.get("/admin/?lang=zh_Hans_CN").get_data(as_text=True)


def test_english_catalogue_is_complete():
    import os

    from babel.messages.pofile import read_po

    path = os.path.join(os.path.dirname(__file__), "..", "translations", "en", "LC_MESSAGES", "messages.po")
    with open(path, "rb") as f:
        catalogue = read_po(f, locale="en")
    untranslated = [m.id for m in catalogue if m.id and (not m.string or m.fuzzy)]
    assert not untranslated, f"msgids without English: {untranslated}"
