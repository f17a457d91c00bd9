"""Fetch the browser libraries CQE serves from static/vendor/, from the npm registry, pinned by version
and checked against the registry's sha512 integrity. `make run` and `make test` call it; nothing is
downloaded again once a package's files are in place.

    python tools/vendor.py            # fetch what is missing
    python tools/vendor.py --check    # exit 1 if anything is missing (no network)
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDOR = os.path.join(ROOT, "static", "vendor")
REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")

# name → (version, sha512 integrity from the registry, {file in the package: file under static/vendor/<dir>/}),
# where <dir> is the package name without its npm scope.
PACKAGES = {
    "tabulator-tables": (
        "6.5.3",
        "sha512-nJ2QaqZzQvd9B4rf4LBnRxfb6sSqA/BX2OsXnSJ2d8k21oXDSTtFtOUrDap04a/6BDGivC/MByCxy43ugadJIg==",
        {"dist/js/tabulator.min.js": "tabulator.min.js",
         "dist/css/tabulator_bootstrap4.min.css": "tabulator_bootstrap4.min.css",
         "LICENSE": "LICENSE"},
    ),
    # Noto Sans SC (SIL Open Font License) as TrueType-outline .ttf files: ReportLab embeds a subset of
    # them in every PDF (纪实报告, 确认单, 汇总表), so Chinese reads right wherever the PDF is opened.
    "@expo-google-fonts/noto-sans-sc": (
        "0.4.3",
        "sha512-9rAwdFTFHbO/u6Cs0gj2jZbW74TGIiaFNQnXYH2s5wA1bzVkwbaviL4t8YUV642eGYjg86eH6DkAEQmfNHDncQ==",
        {"400Regular/NotoSansSC_400Regular.ttf": "NotoSansSC-Regular.ttf",
         "700Bold/NotoSansSC_700Bold.ttf": "NotoSansSC-Bold.ttf",
         "LICENSE_FONT": "OFL.txt"},
    ),
    # Chart.js (MIT): the progress dashboard's bar charts (views/dashboard.py).
    "chart.js": (
        "4.6.1",
        "sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==",
        {"dist/chart.umd.min.js": "chart.umd.min.js", "LICENSE.md": "LICENSE.md"},
    ),
}


def _target(name: str, dest: str) -> str:
    return os.path.join(VENDOR, name.rsplit("/", 1)[-1], dest)


def missing() -> list[str]:
    return [name for name, (_, _, files) in PACKAGES.items()
            if not all(os.path.exists(_target(name, dest)) for dest in files.values())]


def fetch(name: str) -> None:
    version, integrity, files = PACKAGES[name]
    url = f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    algo, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{name}@{version}: integrity mismatch ({algo} {actual} != {expected})")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for inner, dest in files.items():
            member = tar.extractfile(f"package/{inner}")
            if member is None:
                raise SystemExit(f"{name}@{version}: {inner} is not in the package")
            path = _target(name, dest)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".part", "wb") as out:
                out.write(member.read())
            os.replace(path + ".part", path)
    print(f"vendor: {name}@{version} → static/vendor/{name.rsplit('/', 1)[-1]}/")


def main() -> None:
    todo = missing()
    if "--check" in sys.argv:
        if todo:
            raise SystemExit(f"vendor: missing {', '.join(todo)} (run: make vendor)")
        return
    for name in todo:
        fetch(name)


if __name__ == "__main__":
    main()
