"""``trainer import-bvh``: BVH mocap -> AMASS-layout ``.npz`` (one per clip) for training.

    trainer import-bvh ../shared/data/motion --out data/motion-open

Each BVH is retargeted onto the body model (``tracker.motion.retarget``): pose, root
translation and a body shape fitted per clip; the mean mapped-joint distance is the clip's
retarget error. Clips are written as ``OUT/<path below INPUT>.npz`` with ``poses (N, 156)``,
``trans (N, 3)``, ``betas (16,)``, ``gender``, ``mocap_framerate`` (plus ``source``,
``mapping``, ``retarget_error_mm``, ``floor_shift``, ``hands_from_bvh``, ``segment``). A
clip cut at jumps in the mocap becomes ``<name>_part<k>.npz``. ``OUT/summary.json`` keeps
every clip's figures and its plausibility report (``tracker.motion.plausibility``); clips
already converted (or refused) with the same settings are skipped (``--force`` redoes them).

A clip whose retargeted motion is not a plausible human motion (a joint far beyond its human
range in many frames, a head folded over or facing backwards, hands, feet or head that cannot
follow the file's orientations) is *refused*: nothing is written for it (files an earlier run
wrote for it are removed), and its summary entry holds the one-line reason and the report.
A file whose motion data is cut short (a truncated download or copy) is refused the same way,
the reason naming the line and frame where the data stops (``cut`` in its summary entry).
The exit status is 1 when nothing was converted or when a file could not be read or was cut
(refused-as-implausible and too-short clips alone leave it 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SUMMARY = "summary.json"
RETARGET_VERSION = 3
"""Bumped when the retargeting changes, so that clips converted before are redone."""


def add_arguments(p):
    from tracker.options import add_body_model_argument

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BVH files or folders (recursive)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--mapping", default=None, metavar="PROFILE|FILE",
                   help="built-in profile (smplh, iclone-cc, poser, cmu-cgspeed, cmu-asf, "
                        "mixamo) or a JSON mapping file; default: detected per file")
    p.add_argument("--fps", type=float, default=60.0, help="output frame rate (default 60)")
    add_body_model_argument(p)
    p.add_argument("--iters", type=int, default=60, help="refinement steps per frame batch")
    p.add_argument("--min-seconds", type=float, default=0.5,
                   help="skip clips shorter than this (rest-pose files)")
    p.add_argument("--jobs", type=int, default=1, help="clips converted in parallel")
    p.add_argument("--force", action="store_true", help="convert clips already converted")


def find_bvh(inputs: list[str]) -> tuple[list[tuple[Path, str]], list[str]]:
    """``[(file, name)]``: name = the path below its INPUT folder, without suffix."""
    found, problems = [], []
    for inp in map(Path, inputs):
        if inp.is_file():
            found.append((inp, inp.stem))
        elif inp.is_dir():
            files = sorted(f for f in inp.rglob("*") if f.suffix.lower() == ".bvh")
            if not files:
                problems.append(f"{inp}: no .bvh files")
            found += [(f, f.relative_to(inp).with_suffix("").as_posix()) for f in files]
        else:
            problems.append(f"{inp}: no such file or folder")
    return found, problems


# ------------------------------------------------------------------------------ one clip
_BODY = {}


def _body(path):
    if path not in _BODY:
        from tracker.body import load_body_model

        _BODY.clear()
        _BODY[path] = load_body_model(path)
    return _BODY[path]


def convert_clip(src: Path, name: str, out_dir: Path, mapping, settings: dict) -> dict:
    """Retarget one BVH and write its ``.npz`` file(s); returns its summary entry.

    Raises whatever reading or fitting raises (the caller reports and skips the clip).
    """
    from tracker.motion.bvh import read_bvh
    from tracker.motion.retarget import RetargetOptions, retarget

    cpu0 = time.process_time()
    key = _key(src, settings)
    bvh = read_bvh(src)
    if bvh.truncated:  # a cut file: its frames end mid-motion, converting them is a guess
        return dict(name=name, source=str(src), key=key, cut=True,
                    refused=f"file cut short: {bvh.warnings[0]}; nothing converted")
    if bvh.num_frames / bvh.fps < settings["min_seconds"]:
        return dict(name=name, source=str(src), skipped=f"too short ({bvh.num_frames} frames,"
                    f" {bvh.num_frames / bvh.fps:.2f} s): a rest pose, not a motion")
    body = _body(settings["body_model"])
    res = retarget(bvh, body, mapping, RetargetOptions(fps=settings["fps"],
                                                       iters=settings["iters"]))
    info = dict(name=name, source=str(src), key=key, mapping=res.mapping,
                error_mm=round(res.error_mm, 2), marker_error_mm=round(res.marker_error_mm, 2),
                joint_error_mm=res.joint_error_mm, unit=res.unit, up=res.up, notes=res.notes,
                plausibility=res.plausibility, fit_seconds=round(res.seconds, 1))
    if res.refusal:
        return dict(info, refused=res.refusal,
                    cpu_seconds=round(time.process_time() - cpu0, 1))
    files = _write_parts(res, name, src, out_dir, key)
    frames = sum(len(p) for p, _ in res.parts())
    return dict(info, files=files, frames=frames, seconds=frames / res.fps, fps=res.fps,
                floor_shift_mm=round(res.floor_shift_mm, 1), hands_from_bvh=res.hands,
                betas=[round(float(b), 3) for b in res.betas],
                cpu_seconds=round(time.process_time() - cpu0, 1))


def _write_parts(res, name: str, src: Path, out_dir: Path, key: str) -> list[str]:
    """Write a result's segments as ``.npz`` files (each to a temporary name first, renamed
    once all are written, so that a failure leaves no partial clip). Returns their paths
    relative to ``out_dir``."""
    import numpy as np

    parts = res.parts()
    done = []
    try:
        for k, ((poses, trans), seg) in enumerate(zip(parts, res.segments, strict=True)):
            stem = name if len(parts) == 1 else f"{name}_part{k + 1}"
            path = out_dir / f"{stem}.npz"
            tmp = path.with_name(path.stem + ".partial.npz")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, poses=poses, trans=trans, betas=res.betas, gender="neutral",
                     mocap_framerate=np.float64(res.fps), source=str(src), mapping=res.mapping,
                     retarget_error_mm=np.float32(res.error_mm),
                     floor_shift=np.float32(res.floor_shift_mm / 1000),
                     hands_from_bvh=np.bool_(res.hands), segment=np.array(seg), import_key=key)
            done.append((tmp, path))
    except BaseException:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in done:
        tmp.replace(path)
    return [path.relative_to(out_dir).as_posix() for _, path in done]


def _job(args):
    src, name, out_dir, mapping, settings = args
    try:
        return convert_clip(src, name, out_dir, mapping, settings)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one bad clip never ends the batch
        from tracker.motion.bvh import BvhError

        why = (str(exc).removeprefix(f"{src}: ") if isinstance(exc, BvhError)
               else f"{type(exc).__name__}: {exc}")
        return dict(name=name, source=str(src), failed=why)


def _key(src: Path, settings: dict) -> str:
    from tracker.motion.amass import file_digest

    return f"{file_digest(src)}-{json.dumps(settings, sort_keys=True)}"


def _up_to_date(entry: dict | None, src: Path, out_dir: Path, settings: dict) -> bool:
    """Converted (or refused) before from the same file with the same settings."""
    if not entry or ("files" not in entry and "refused" not in entry):
        return False
    if entry.get("key") != _key(src, settings):
        return False
    return all((out_dir / f).is_file() for f in entry.get("files", []))


def _remove_files(entry: dict | None, out_dir: Path, keep=()) -> None:
    """Delete the files an earlier run wrote for a clip that this run did not write again
    (the clip is now refused, or cut into fewer parts)."""
    for f in set((entry or {}).get("files", [])) - set(keep):
        (out_dir / f).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ summary
def summarize(entries: dict) -> dict:
    """Totals over converted clips: counts, frames, hours, retarget errors per source, refused
    clips and clips with joint-limit violations."""
    import numpy as np

    ok = [e for e in entries.values() if "files" in e]
    by_src: dict[str, list[dict]] = {}
    for e in entries.values():
        by_src.setdefault(e["name"].split("/")[0] if "/" in e["name"] else ".", []).append(e)
    errs = [e["error_mm"] for e in ok]

    def stats(es: list[dict]) -> dict:
        good = [e for e in es if "files" in e]
        v = [e["error_mm"] for e in good]
        m = [e["marker_error_mm"] for e in good if "marker_error_mm" in e]
        return dict(clips=len(good), refused=sum("refused" in e for e in es),
                    with_violations=sum(_violated(e) for e in good),
                    median_error_mm=round(float(np.median(v)), 2) if v else None,
                    max_error_mm=round(float(np.max(v)), 2) if v else None,
                    median_marker_error_mm=round(float(np.median(m)), 2) if m else None)

    return dict(
        clips=len(ok), failed=sum("failed" in e for e in entries.values()),
        skipped=sum("skipped" in e for e in entries.values()),
        refused=sum("refused" in e for e in entries.values()),
        cut=sum(bool(e.get("cut")) for e in entries.values()),
        with_violations=sum(_violated(e) for e in ok),
        files=sum(len(e["files"]) for e in ok), frames=sum(e["frames"] for e in ok),
        hours=round(sum(e["seconds"] for e in ok) / 3600, 4),
        cpu_seconds=round(sum(e.get("cpu_seconds", 0.0) for e in ok)),
        median_error_mm=round(float(np.median(errs)), 2) if errs else None,
        mean_error_mm=round(float(np.mean(errs)), 2) if errs else None,
        max_error_mm=round(float(np.max(errs)), 2) if errs else None,
        per_source={k: stats(v) for k, v in sorted(by_src.items()) if any(
            "files" in e or "refused" in e for e in v)})


def _violated(e: dict) -> bool:
    return bool(e.get("plausibility", {}).get("limit_violations"))


def print_summary(t: dict, seconds: float | None = None) -> None:
    cut = t.get("cut", 0)
    print(f"clips converted: {t['clips']} ({t['files']} files), failed: {t['failed']}, "
          f"skipped: {t['skipped']}, refused as implausible: {t.get('refused', 0) - cut}"
          + (f", refused as cut short: {cut}" if cut else ""))
    print(f"motion: {t['frames']} frames, {t['hours']:.3f} h")
    if t["median_error_mm"] is not None:
        print(f"retarget error (mean mapped-joint distance): median {t['median_error_mm']} mm, "
              f"mean {t['mean_error_mm']} mm, max {t['max_error_mm']} mm")
        for src, s in t["per_source"].items():
            extra = "".join(f", {s[k]} {w}" for k, w in (("refused", "refused"), (
                "with_violations", "with limit violations")) if s.get(k))
            if s.get("clips"):
                print(f"  {src}: {s['clips']} clips, median {s['median_error_mm']} mm, "
                      f"max {s['max_error_mm']} mm{extra}")
            elif extra:
                print(f"  {src}: 0 clips{extra}")
    if t.get("with_violations"):
        print(f"clips with joint-limit violations (kept): {t['with_violations']}")
    if seconds is not None:
        print(f"time: {seconds:.0f} s wall, {t['cpu_seconds']} s CPU in the fits")


def plausibility_row(e: dict) -> str:
    """One table row of a clip's plausibility report (see :func:`print_plausibility`)."""
    p = e.get("plausibility") or {}
    if not p:
        return f"| {e['name']} | | | | | | | {e.get('failed') or e.get('skipped', '')} |"
    end = p.get("end_error_deg", {})
    worst = max(end.items(), key=lambda kv: kv[1]["median"], default=None)
    viol = ", ".join(f"{k} {v['max_deg']:.0f}° ({100 * v['frames']:.0f}%)"
                     for k, v in p.get("limit_violations", {}).items()) or "none"
    ignored = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p.get("ignored_orientations", {}).items()
                        if v >= 0.01)
    viol += f"; file orientation ignored: {ignored}" if ignored else ""
    status = f"refused: {e['refused']}" if "refused" in e else "ok"
    return (f"| {e['name']} | {e['error_mm']:.1f} / {e.get('marker_error_mm', 0):.1f} | "
            f"{p['head_up']['median']:+.2f} ({p['head_up']['p5']:+.2f}) | "
            f"{p['head_facing_deg']['median']:.0f} ({p['head_facing_deg']['p95']:.0f}) | "
            + (f"{worst[0]} {worst[1]['median']:.1f} ({worst[1]['p95']:.1f})" if worst else "-")
            + f" | {viol} | {p.get('alignment', '')} | {status} |")


def print_plausibility(entries: list[dict]) -> None:
    """The per-clip plausibility table of this run's clips (markdown)."""
    rows = [e for e in entries if "plausibility" in e]
    if not rows:
        return
    print("| clip | error / marker mm | head up: median (p5) | head vs pelvis yaw °: median "
          "(p95) | worst end joint ° vs source: median (p95) | limit violations; file "
          "orientations ignored | alignment | status |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for e in rows:
        print(plausibility_row(e))


def _read_summary(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"warning: ignoring unreadable {path} ({exc}); clips will be redone")
        return {}


def _write_summary(path: Path, settings: dict, entries: dict) -> dict:
    totals = summarize(entries)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(settings=settings, clips=entries, totals=totals), indent=1))
    tmp.replace(path)
    return totals


def run(args) -> int:
    from tracker.body import BodyModelError
    from tracker.cli import UserError
    from tracker.motion.mappings import load_mapping

    files, problems = find_bvh(args.inputs)
    for p in problems:
        print(f"warning: {p}")
    if not files:
        raise UserError("no BVH files found in " + ", ".join(args.inputs))
    mapping = None
    if args.mapping:
        try:
            mapping = load_mapping(args.mapping)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    try:
        _body(args.body_model)
    except BodyModelError as exc:
        raise UserError(str(exc)) from None
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / SUMMARY
    entries = _read_summary(summary_path).get("clips", {})
    settings = dict(fps=args.fps, iters=args.iters, min_seconds=args.min_seconds,
                    mapping=args.mapping, body_model=args.body_model,
                    body=_body(args.body_model).fingerprint, retarget=RETARGET_VERSION)
    todo = [(f, n) for f, n in files
            if args.force or not _up_to_date(entries.get(n), f, out, settings)]
    print(f"{len(files)} BVH files, {len(files) - len(todo)} already converted, "
          f"converting {len(todo)} -> {out}")
    t0 = time.perf_counter()
    jobs = [(f, n, out, mapping, settings) for f, n in todo]
    done = []
    for r in _run_jobs(jobs, max(1, args.jobs)):
        if "files" in r or "refused" in r:
            _remove_files(entries.get(r["name"]), out, keep=r.get("files", []))
        if "refused" in r:
            print(f"refused: {r['source']}: {r['refused']}")
        elif "failed" in r:
            print(f"failed: {r['source']}: {r['failed']}")
        elif "skipped" in r:
            print(f"skipped: {r['source']}: {r['skipped']}")
        entries[r["name"]] = r
        done.append(r)
        _write_summary(summary_path, settings, entries)
    totals = _write_summary(summary_path, settings, entries)
    print_plausibility(sorted(done, key=lambda e: e["name"]))
    print_summary(totals, time.perf_counter() - t0)
    print(f"summary: {summary_path}")
    broken = [e for _, n in files if (e := entries.get(n)) and ("failed" in e or e.get("cut"))]
    if broken:
        print(f"{len(broken)} of {len(files)} BVH files could not be converted (unreadable or cut "
              "short; nothing written for them): " + ", ".join(e["source"] for e in broken[:5])
              + (", ..." if len(broken) > 5 else ""), file=sys.stderr)
    return 0 if totals["clips"] and not broken else 1


def _run_jobs(jobs, n):
    """Yield results as clips finish, with a progress bar over clips."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="clips", unit="clip")
    if n == 1:
        for j in jobs:
            bar.set_postfix_str(j[1][-30:])
            yield _job(j)
            bar.update()
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(n) as ex:
            for fut in as_completed([ex.submit(_job, j) for j in jobs]):
                yield fut.result()
                bar.update()
    bar.close()
