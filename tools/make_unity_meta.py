"""Write the missing ``.meta`` files of the Unity package ``clients/unity``.

    python tools/make_unity_meta.py

Unity ignores an asset without a ``.meta`` file in a package installed from git (the
package folder is immutable there), so every file and folder of the package carries one.
GUIDs are derived from the package name and the path (stable, no randomness). Folders ending
in ``~`` (``Tests~``) are hidden from Unity and get none. Existing files are left alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clients" / "unity"
TAIL = "  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n"
IMPORTERS = {
    ".cs": "MonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n"
           "  executionOrder: 0\n  icon: {instanceID: 0}\n  userData: \n  assetBundleName: \n"
           "  assetBundleVariant: \n",
    ".asmdef": "AssemblyDefinitionImporter:\n" + TAIL,
    ".md": "TextScriptImporter:\n" + TAIL,
    ".json": "TextScriptImporter:\n" + TAIL,
}


def meta_text(path: Path) -> str:
    rel = path.relative_to(PACKAGE).as_posix()
    guid = hashlib.md5(f"com.fitstream.tracker/{rel}".encode()).hexdigest()
    if path.is_dir():
        body = "folderAsset: yes\nDefaultImporter:\n" + TAIL
    elif path.name == "package.json":
        body = "PackageManifestImporter:\n" + TAIL
    else:
        body = IMPORTERS.get(path.suffix, "DefaultImporter:\n" + TAIL)
    return f"fileFormatVersion: 2\nguid: {guid}\n{body}"


def main() -> int:
    written = 0
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if path.suffix == ".meta" or any(p.endswith("~") or p.startswith(".") for p in rel.parts):
            continue
        meta = path.with_name(path.name + ".meta")
        if not meta.exists():
            meta.write_text(meta_text(path))
            written += 1
            print(f"wrote {meta.relative_to(PACKAGE.parent.parent)}")
    print(f"{written} .meta file(s) written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
