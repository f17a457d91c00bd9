#!/usr/bin/env bash
# Re-extract the project's strings (msgids are the Chinese UI text), merge them into the English
# catalogue, and compile it.  After running, fill any new/empty msgstr entries (and clear "fuzzy"
# flags) in translations/en/LC_MESSAGES/messages.po, then run this script again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
"$PYBABEL" extract -F babel.cfg \
    -k _l -k lazy_gettext -k lazy_ngettext:1,2 \
    -o translations/messages.pot .
"$PYBABEL" update -i translations/messages.pot -d translations -l en
"$PYBABEL" compile -d translations --statistics
# List what still needs a human: fuzzy entries and empty translations (the header is skipped).
.venv/bin/python - <<'PY'
from babel.messages.pofile import read_po
with open("translations/en/LC_MESSAGES/messages.po", "rb") as fh:
    cat = read_po(fh)
todo = [m for m in cat if m.id and (m.fuzzy or not (m.string if isinstance(m.string, str) else all(m.string)))]
for m in todo:
    print("TODO%s: %s" % (" (fuzzy)" if m.fuzzy else "", m.id if isinstance(m.id, str) else m.id[0]))
print("%d message(s) need translating" % len(todo) if todo else "all messages translated")
PY
