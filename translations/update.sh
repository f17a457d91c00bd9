#!/usr/bin/env bash
# Re-extract the project's strings (msgids are the Chinese UI text), merge them into the English
# catalogue and compile it. Fill new msgstr entries in translations/en/LC_MESSAGES/messages.po.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o translations/messages.pot .
.venv/bin/pybabel update -i translations/messages.pot -d translations
.venv/bin/pybabel compile -d translations
