#!/usr/bin/env bash
# Compile the Unity client's engine-independent core (clients/unity/Core, no UnityEngine)
# and its tests with plain Mono, and run them against the golden vectors that
# tools/make_golden_vectors.py writes (the file tests/test_vmc.py checks too).
#
#     tools/test_csharp.sh          # installs Mono (apt-get install mono-mcs) when missing
#
# What this does not cover: the MonoBehaviours in clients/unity/Runtime need UnityEngine,
# NetMQ and MessagePack-CSharp, which are not available here (no Unity editor, no NuGet).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mcs >/dev/null || ! command -v mono >/dev/null; then
    as_root=()
    [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && as_root=(sudo -n); }
    if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; }; then
        echo "test_csharp: installing Mono (apt-get install mono-mcs)" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends mono-mcs >/dev/null 2>&1; then
            "${as_root[@]}" apt-get update -qq >/dev/null
            "${as_root[@]}" apt-get install -y -qq --no-install-recommends mono-mcs >/dev/null
        fi
    else
        echo "test_csharp: error: Mono (mcs, mono) is missing; install the Debian/Ubuntu" \
             "package mono-mcs (this script does it when run as root)" >&2
        exit 2
    fi
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
core=(clients/unity/Core/*.cs)
# the core alone, as its own assembly (what Unity builds from Core/*.asmdef) ...
mcs -target:library -warnaserror+ -out:"$out/Fitstream.Tracker.Core.dll" "${core[@]}"
# ... and the tests against it
mcs -warnaserror+ -reference:"$out/Fitstream.Tracker.Core.dll" -out:"$out/CoreTests.exe" \
    "clients/unity/Tests~/CoreTests.cs"
mono "$out/CoreTests.exe" "clients/unity/Tests~/golden_vectors.txt"
