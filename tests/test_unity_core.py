"""The Unity client's engine-independent C# core, compiled and run under Mono against the
golden vectors (``tools/test_csharp.sh``; it installs Mono with apt-get when missing). The
Unity MonoBehaviours are not compiled here: no Unity editor and no NuGet on these machines.
Also: every asset of the UPM package has its ``.meta`` file (Unity ignores assets without one
in an immutable, git-installed package)."""

import json
import subprocess

from server_harness import ROOT

UNITY = ROOT / "clients" / "unity"


def test_csharp_core_passes_its_golden_vector_tests():
    r = subprocess.run(["bash", str(ROOT / "tools" / "test_csharp.sh")], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("C# core: ") and last.endswith(" passed, 0 failed"), last
    assert int(last.split()[2]) >= 60
    assert "FAIL" not in r.stdout


def test_upm_package_layout():
    pkg = json.loads((UNITY / "package.json").read_text())
    assert pkg["name"] == "com.fitstream.tracker" and pkg["version"]
    core = json.loads((UNITY / "Core" / "Fitstream.Tracker.Core.asmdef").read_text())
    assert core["noEngineReferences"] is True and core["references"] == []
    runtime = json.loads((UNITY / "Runtime" / "Fitstream.Tracker.asmdef").read_text())
    assert "Fitstream.Tracker.Core" in runtime["references"]
    for path in UNITY.rglob("*"):
        rel = path.relative_to(UNITY)
        if path.suffix == ".meta" or any(p.endswith("~") or p.startswith(".")
                                         for p in rel.parts):
            continue
        assert path.with_name(path.name + ".meta").is_file(), f"{rel} has no .meta"
    for meta in UNITY.rglob("*.meta"):
        assert meta.with_suffix("").exists(), f"{meta.relative_to(UNITY)}: stale .meta"
