"""The training-data interface: clips -> windows of stage-frame ground truth and observed
signals; seeding per (seed, epoch, index), hand synthesis, the cache, collation, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tracker.body import load_body_model
from tracker.motion.amass import MotionClip
from tracker.motion.procedural import generate_motion
from tracker.signals.device import DeviceModel
from tracker.signals.headset import hand_visibility, head_to_hmd
from trainer.dataset import WindowDataset, load_clips, split_clips

FPS = 20.0


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def clips(body):
    out = []
    for k, fingers in enumerate((True, False)):
        m = generate_motion(seconds=2.0, fps=FPS, seed=k, body=body, shape_std=0.5)
        poses = m["poses"].copy()
        if not fingers:
            poses[:, 66:] = 0.0  # like imported CMU mocap
        out.append(MotionClip(name=f"gen/{k}", poses=poses, trans=m["trans"], betas=m["betas"],
                              fps=FPS, source="generated"))
    return out


def test_items_shapes_dtypes_and_collation(body, clips):
    ds = WindowDataset(clips, body, window=8, stride=4)
    assert len(ds) == 2 * ((40 - 8) // 4 + 1)
    item = ds[0]
    want = {"poses": (8, 156), "trans": (8, 3), "betas": (16,), "head": (8, 4, 4),
            "wrists": (8, 2, 4, 4), "tips": (8, 2, 5, 3), "tracked": (8, 2),
            "tips_valid": (8, 2), "visible": (8, 2), "mode": (), "fps": ()}
    assert {k: tuple(v.shape) for k, v in item.items()} == want
    for k in ("tracked", "tips_valid", "visible"):
        assert item[k].dtype == torch.bool
    assert item["mode"].dtype == torch.int64 and item["poses"].dtype == torch.float32
    batch = next(iter(DataLoader(ds, batch_size=5, shuffle=True)))
    assert batch["head"].shape == (5, 8, 4, 4) and batch["mode"].shape == (5,)
    one = WindowDataset(clips, body, window=1)
    assert len(one) == 80 and one[3]["poses"].shape == (1, 156)


def test_clean_windows_are_the_stage_frame_ground_truth(body, clips):
    ds = WindowDataset(clips, body, window=6, device_model=None, hands=False)
    for i in (0, len(ds) - 1):
        it = ds[i]
        st = body.forward_axis_angle(it["poses"], it["betas"].expand(6, -1), it["trans"])
        torch.testing.assert_close(it["head"], st.head @ head_to_hmd(), atol=1e-4, rtol=0)
        torch.testing.assert_close(it["tips"], st.tips, atol=1e-4, rtol=0)
        assert (st.joints[:, 15, 1] > 1.2).all()  # Y up: the head is high above the floor
        assert it["tracked"].all()


def test_seeding_by_seed_epoch_and_index(body, clips):
    ds = WindowDataset(clips, body, window=8)
    a, b = ds[5], ds[5]
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    ds.set_epoch(1)
    c = ds[5]
    assert not torch.equal(a["head"], c["head"])  # new noise
    torch.testing.assert_close(a["poses"][:, :66], c["poses"][:, :66])  # same body motion
    modes = {int(ds[i]["mode"]) for i in range(len(ds))}
    assert modes == {0, 1}
    other = WindowDataset(clips, body, window=8, seed=1)
    assert not torch.equal(other[5]["head"], a["head"])


def test_fingers_are_synthesized_only_where_missing(body, clips):
    ds = WindowDataset(clips, body, window=8, device_model=None)
    with_fingers = ds[0]  # clip 0 has its own (procedural) fingers
    stage = torch.from_numpy(ds.data[0]["poses"][:8])
    torch.testing.assert_close(with_fingers["poses"], stage)
    j = next(i for i in range(len(ds)) if ds.index[i][0] == 1)
    it = ds[j]
    assert it["poses"][:, 66:].abs().max() > 0.1  # synthesized
    ds.set_epoch(3)
    assert not torch.equal(ds[j]["poses"][:, 66:], it["poses"][:, 66:])  # reseeded per epoch
    st = body.forward_axis_angle(it["poses"], it["betas"].expand(8, -1), it["trans"])
    torch.testing.assert_close(it["tips"], st.tips, atol=1e-4, rtol=0)  # tips follow fingers
    flat = WindowDataset(clips, body, window=8, device_model=None, hands=False)[j]
    assert flat["poses"][:, 66:].abs().max() == 0


def test_device_noise_and_visibility(body, clips):
    noisy = WindowDataset(clips, body, window=20, device_model=DeviceModel.presets()["degraded"])
    clean = WindowDataset(clips, body, window=20, device_model=None)
    d = (noisy[1]["wrists"][..., :3, 3] - clean[1]["wrists"][..., :3, 3]).norm(dim=-1)
    assert 0.001 < d.mean() < 0.05
    hs = WindowDataset(clips, body, window=20, modes=("half-space",), device_model=None)
    for i in range(len(hs)):
        it = hs[i]
        want = hand_visibility(it["head"], it["wrists"][..., :3, 3], it["tracked"], "half-space")
        assert torch.equal(it["visible"], want) and int(it["mode"]) == 0


def test_cache_is_written_and_reused(body, clips, tmp_path, monkeypatch):
    a = WindowDataset(clips, body, window=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    import tracker.signals.motion as motion

    def boom(*_, **__):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(motion, "motion_signals", boom)
    b = WindowDataset(clips, body, window=8, cache_dir=tmp_path)
    for k in a[3]:
        torch.testing.assert_close(a[3][k], b[3][k])


def test_split_is_stable_by_name():
    clips = [MotionClip(f"c{i}", np.zeros((2, 156), np.float32), np.zeros((2, 3), np.float32),
                        np.zeros(16, np.float32), 60.0, "") for i in range(400)]
    train, val = split_clips(clips, 0.1, seed=0)
    assert 20 < len(val) < 60 and len(train) + len(val) == 400
    t2, v2 = split_clips(clips[::-1][:200], 0.1, seed=0)  # fewer clips, other order
    assert {c.name for c in v2} == {c.name for c in val} & {c.name for c in clips[200:]}
    assert {c.name for c in split_clips(clips, 0.1, seed=1)[1]} != {c.name for c in val}
    c = clips[0]
    parts = [MotionClip(f"take{i}_part{k}", c.poses, c.trans, c.betas, 60.0, "")
             for i in range(50) for k in (1, 2)]
    names = {p.name for p in split_clips(parts, 0.3)[1]}
    assert names and all(n[:-1] + "1" in names and n[:-1] + "2" in names for n in names)


def test_load_clips_skips_bad_files(tmp_path):
    np.savez(tmp_path / "ok.npz", poses=np.zeros((15, 156)), trans=np.zeros((15, 3)),
             betas=np.zeros(16), gender="neutral", mocap_framerate=30.0)
    (tmp_path / "bad.npz").write_bytes(b"\x00" * 10)
    clips, problems = load_clips([tmp_path], fps=FPS)
    assert len(clips) == 1 and len(problems) == 1 and "bad.npz" in problems[0]
    assert clips[0].fps == FPS and clips[0].num_frames == 10


def test_import_bvh_and_data_info_commands(body, tmp_path, capsys):
    """The README path: BVH folder -> trainer import-bvh -> trainer data-info --cache."""
    import json

    from tracker.motion.bvh import write_bvh
    from trainer.cli import main

    m = generate_motion(["walk"], seconds=1.2, fps=30, seed=2, body=body)
    src = tmp_path / "mocap"
    write_bvh(src / "take_01.bvh", m["poses"], m["trans"], m["betas"], body, 30)
    (src / "broken").mkdir()
    (src / "broken" / "take_02.bvh").write_text("HIERARCHY\nROOT x\n{\n")
    out = tmp_path / "set"
    argv = ["import-bvh", str(src), "--out", str(out), "--fps", "20"]
    assert main(argv) == 1  # take_02 could not be read: the exit status says so
    z = np.load(out / "take_01.npz")
    assert z["poses"].shape == (24, 156) and float(z["mocap_framerate"]) == 20.0
    assert str(z["gender"]) == "neutral" and z["betas"].shape == (16,)
    totals = json.loads((out / "summary.json").read_text())["totals"]
    assert totals["clips"] == 1 and totals["failed"] == 1 and totals["median_error_mm"] < 10
    assert "failed" in capsys.readouterr().out
    assert main(argv) == 1  # nothing left to convert (take_02 is still unreadable)
    assert "1 already converted" in capsys.readouterr().out
    assert main(["data-info", str(out), "--fps", "20", "--cache", str(tmp_path / "cache"),
                 "--window", "8"]) == 0
    text = capsys.readouterr().out
    assert "1 clips, 24 frames" in text and "window dataset: 3 windows" in text
