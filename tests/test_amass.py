"""AMASS reader on synthetic files in both real layouts, resampling (slerp), selection by
dataset folder and split file, and bad files that are skipped and counted."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tracker.motion.amass import (
    SMPLX_TO_SMPLH,
    MotionFileError,
    clip_has_hands,
    find_motion_files,
    load_amass,
    read_amass,
    resample_motion,
)


def smplh_file(path, n=24, fps=120.0, gender=b"female", seed=0):
    """An AMASS SMPL+H release file (gender stored as bytes, as in many releases)."""
    rng = np.random.default_rng(seed)
    d = dict(poses=rng.normal(0, 0.3, (n, 156)), trans=rng.normal(0, 1, (n, 3)),
             betas=rng.normal(0, 1, 16), gender=np.array(gender), mocap_framerate=np.array(fps),
             dmpls=np.zeros((n, 8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **d)
    return d


def smplx_file(path, n=10, fps=60.0, seed=1):
    """An AMASS SMPL-X ``*_stageii.npz`` (165 pose values, ``mocap_frame_rate``)."""
    rng = np.random.default_rng(seed)
    d = dict(poses=rng.normal(0, 0.3, (n, 165)), trans=rng.normal(0, 1, (n, 3)),
             betas=rng.normal(0, 1, 16), gender="male", mocap_frame_rate=fps,
             surface_model_type="smplx", root_orient=np.zeros((n, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **d)
    return d


def test_smplh_release_with_bytes_gender(tmp_path):
    d = smplh_file(tmp_path / "a_poses.npz")
    m = read_amass(tmp_path / "a_poses.npz")
    assert m["layout"] == "smplh" and m["gender"] == "female" and m["fps"] == 120.0
    assert m["poses"].shape == (24, 156) and m["poses"].dtype == np.float32
    np.testing.assert_allclose(m["poses"], d["poses"], atol=1e-6)
    np.testing.assert_allclose(m["betas"], d["betas"], atol=1e-6)


def test_smplx_stageii_keeps_the_smplh_joints(tmp_path):
    d = smplx_file(tmp_path / "b_stageii.npz")
    m = read_amass(tmp_path / "b_stageii.npz")
    assert m["layout"] == "smplx" and m["gender"] == "male" and m["fps"] == 60.0
    p = d["poses"].reshape(-1, 55, 3)
    np.testing.assert_allclose(m["poses"][:, :66], d["poses"][:, :66], atol=1e-6)  # body
    np.testing.assert_allclose(m["poses"][:, 66:111], p[:, 25:40].reshape(-1, 45), atol=1e-6)
    np.testing.assert_allclose(m["poses"][:, 111:], p[:, 40:55].reshape(-1, 45), atol=1e-6)
    assert len(SMPLX_TO_SMPLH) == 52 and 22 not in SMPLX_TO_SMPLH  # no jaw, no eyes


def test_object_arrays_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", poses=np.zeros((3, 156)), trans=np.zeros((3, 3)),
             betas=np.zeros(16), gender=np.array("male", dtype=object), mocap_framerate=30.0)
    assert read_amass(tmp_path / "o.npz")["gender"] == "neutral"


def test_betas_of_other_lengths_are_padded_or_cut(tmp_path):
    for k in (10, 300):
        np.savez(tmp_path / f"c{k}.npz", poses=np.zeros((3, 156)), trans=np.zeros((3, 3)),
                 betas=np.arange(k, dtype=float), gender="neutral", mocap_framerate=30.0)
        b = read_amass(tmp_path / f"c{k}.npz")["betas"]
        assert b.shape == (16,) and b[9] == 9 and (b[10] == 0) == (k == 10)


def test_bad_files_are_reported_skipped_and_counted(tmp_path):
    root = tmp_path / "CMU"
    smplh_file(root / "01" / "good_poses.npz")
    (root / "01" / "garbage_poses.npz").write_bytes(b"this is not a zip file")
    data = (root / "01" / "good_poses.npz").read_bytes()
    (root / "01" / "truncated_poses.npz").write_bytes(data[: len(data) // 2])
    (root / "02").mkdir()
    np.savez(root / "02" / "nokey_poses.npz", trans=np.zeros((3, 3)))
    np.savez(root / "02" / "shape_poses.npz", poses=np.zeros((3, 99)), mocap_framerate=30.0)
    np.savez(root / "02" / "nan_poses.npz", poses=np.full((3, 156), np.nan),
             mocap_framerate=30.0)
    np.savez(root / "02" / "norate_poses.npz", poses=np.zeros((3, 156)))
    np.savez(root / "02" / "shape.npz", betas=np.zeros(16), gender="male")  # not a motion
    clips, problems = load_amass([tmp_path], fps=60.0)
    assert [c.name for c in clips] == [f"{tmp_path.name}/CMU/01/good_poses"]
    assert len(problems) == 6, problems
    for bad, why in [("garbage", "readable"), ("truncated", ""), ("nokey", "'poses'"),
                     ("shape_poses", "99 columns"), ("nan", "NaN"), ("norate", "frame rate")]:
        assert any(bad in p and why in p for p in problems), (bad, problems)
    assert any("no such" in p for p in load_amass([tmp_path / "missing"])[1])
    with pytest.raises(MotionFileError, match="garbage"):
        read_amass(root / "01" / "garbage_poses.npz")


def test_resampling_uses_slerp_and_keeps_frame_zero():
    n, fps = 11, 30.0
    angle = np.linspace(0, 2.0, n)  # about a fixed axis: slerp == linear in the angle
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    poses = np.zeros((n, 156))
    poses[:, 3:6] = angle[:, None] * axis
    poses[:, :3] = Rotation.from_euler("x", 90, degrees=True).as_rotvec()
    trans = np.stack([angle, -angle, angle * 0], -1)
    p, t = resample_motion(poses, trans, fps, 60.0)
    assert p.shape == (21, 156) and t.shape == (21, 3)
    want = np.linspace(0, 2.0, 21)
    np.testing.assert_allclose(np.linalg.norm(p[:, 3:6], axis=-1), want, atol=1e-5)
    np.testing.assert_allclose(p[1:, 3:6] / want[1:, None], np.broadcast_to(axis, (20, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(t[:, 0], want, atol=1e-6)
    np.testing.assert_allclose(p[:, :3], np.broadcast_to(poses[0, :3], (21, 3)), atol=1e-6)
    p2, _ = resample_motion(poses, trans, fps, 15.0)  # downsampling keeps every other frame
    np.testing.assert_allclose(p2, poses[::2], atol=1e-6)
    # the short way round: 170 deg -> -170 deg about z passes through 180, not 0
    q = np.zeros((2, 3))
    q[0, 2], q[1, 2] = np.deg2rad(170), np.deg2rad(-170)
    mid = resample_motion(q, np.zeros((2, 3)), 1.0, 2.0)[0][1]
    assert abs(np.linalg.norm(mid) - np.pi) < 1e-4


def test_selection_by_dataset_folder_and_split_file(tmp_path):
    amass = tmp_path / "amass"
    smplh_file(amass / "CMU" / "01" / "01_01_poses.npz")
    smplh_file(amass / "CMU" / "01" / "01_02_poses.npz")
    smplx_file(amass / "KIT" / "3" / "walk_stageii.npz")
    smplh_file(amass / "BMLrub" / "x" / "y_poses.npz")
    found, _ = find_motion_files([amass], datasets=["cmu", "KIT"])
    assert sorted(n for _, n in found) == ["amass/CMU/01/01_01_poses", "amass/CMU/01/01_02_poses",
                                           "amass/KIT/3/walk_stageii"]
    split = tmp_path / "train_split.txt"
    split.write_text("# protocol\nCMU/01/01_02_poses.npz\nKIT/3/walk_poses.npz\n"
                     "CMU/99/missing_poses.npz\n")
    clips, problems = load_amass([amass], fps=60.0, split_file=split)
    assert sorted(c.name for c in clips) == ["amass/CMU/01/01_02_poses", "amass/KIT/3/walk_stageii"]
    assert any("1 of 3 files in the split" in p for p in problems)
    assert all(c.fps == 60.0 and c.poses.dtype == np.float32 for c in clips)
    cmu = next(c for c in clips if "CMU" in c.name)
    assert cmu.num_frames == 12 and cmu.digest  # 24 frames at 120 fps -> 12 at 60
    with pytest.raises(ValueError, match="folder"):
        load_amass([amass], split_file=tmp_path)


def test_hands_present_or_not():
    poses = np.zeros((5, 156), np.float32)
    assert not clip_has_hands(poses)
    poses[:, 66:] = 0.3  # frozen fingers (e.g. a mean hand) are no finger motion
    assert not clip_has_hands(poses)
    poses[2, 70] = 0.8
    assert clip_has_hands(poses)
