"""Engines: buckets, the build cache, the registry, and parity of every backend with eager
over multi-frame streams (state carried, a mid-stream reset, padded batches).

Parity is checked two ways over a stream: *teacher-forced* (every frame, both engines start
from eager's previous Θ and hidden state: the per-frame fit, over realistic carried states)
and *free-running* over the first frames (each engine carries its own state). Long
free-running streams cannot match: the untrained fitter amplifies float rounding ~10x every 5
frames (eager at batch 8 vs eager at batch 1 differ by 2e-2 after 45 frames), so only the
first frames of a free run are a fair test.

CPU backends (ONNX Runtime, Inductor) build real artifacts into a temporary cache (minutes:
marked ``slow``). TensorRT tests are ``gpu`` and skip without CUDA and torch-tensorrt.
"""

import json

import pytest
import torch

from engines import EagerEngine, EngineError, make_engine
from engines.base import CompiledEngine
from engines.buckets import BUCKETS, bucket_for, chunks, pad_rows
from engines.cache import EngineCache, default_root, fitter_fingerprint
from engines.flat import FlatFit, example_inputs
from engines.registry import available_engines, resolve_engine_name
from engines.streams import make_streams
from engines.trt import half_network, tensorrt_missing
from tracker.body import load_body_model
from tracker.fitter.fitter import FitterConfig, NeuralFitter

# Bounds on Θ per frame and session: ||ΔΘ|| / ||Θ|| and max |ΔΘ| (Θ entries are O(1): 6D
# rotation columns, metres).
FP32_REL = 1e-4
# FP16 networks (``tensorrt-fp16``; the same recipe runs in eager on the CPU below), measured
# teacher-forced on the default model (hidden 256, untrained), 8 sessions x 300 frames:
# max 7.4e-5 relative, 1.05e-3 absolute (p99 4.8e-5 / 3.3e-4). The bounds leave ~3x headroom.
FP16_REL, FP16_ABS = 2.5e-4, 3e-3
FREE_FRAMES = 8  # free-running frames compared at the FP32 bound

SMALL = FitterConfig(hidden=32, layers=2, init_hidden=32, lg_hidden=16, iterations=3)
needs_onnxruntime = pytest.mark.skipif(available_engines()["onnxruntime"] is not None,
                                       reason="onnxruntime / onnxscript not installed")
needs_inductor = pytest.mark.skipif(available_engines()["inductor"] is not None,
                                    reason="no C++ compiler for Inductor")
needs_tensorrt = pytest.mark.skipif(tensorrt_missing() is not None,
                                    reason=str(tensorrt_missing()))


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def fitter(body):
    torch.manual_seed(0)
    return NeuralFitter(body, SMALL).eval()


@pytest.fixture(scope="module")
def streams(body):
    return make_streams(body, sessions=3, frames=16, seed=3)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


def run(engine, streams, frames=None, reset_at=(8, 1), teacher=None):
    """Fit every frame; session ``reset_at[1]`` is reset at frame ``reset_at[0]``.

    Each engine carries its own state, or, with ``teacher`` (an engine), every frame starts
    from the teacher's previous state. Returns ``(theta (T, S, 315), residual, ok, joints
    (T, S, 156))`` (the wire's joint positions)."""
    S = streams.sessions
    state = engine.initial_state(S)
    t_state = teacher.initial_state(S) if teacher is not None else None
    thetas, residuals, oks, joints = [], [], [], []
    for t in range(frames or streams.frames):
        reset = torch.full((S,), t == 0)
        if t == reset_at[0]:
            reset[reset_at[1]] = True
        if teacher is not None:
            state = t_state
        res = engine.fit(streams.batch(t, state.map(lambda x: x.to(engine.device)), reset))
        if teacher is not None:
            ref = teacher.fit(streams.batch(t, t_state, reset))
            t_state = ref.state
        state = res.state
        thetas.append(res.theta.float().cpu())
        residuals.append(res.residual.float().cpu())
        oks.append(res.ok.cpu())
        joints.append(res.joints.float().cpu())
    return torch.stack(thetas), torch.stack(residuals), torch.stack(oks), torch.stack(joints)


def check_engine(engine, reference, streams, rel, abs_):
    """Teacher-forced over the whole stream, and free-running over its first frames."""
    assert_parity(run(reference, streams), run(engine, streams, teacher=reference), rel, abs_)
    assert_parity(run(reference, streams, FREE_FRAMES), run(engine, streams, FREE_FRAMES),
                  rel, abs_)


def assert_parity(ref, got, rel, abs_):
    (th_r, res_r, ok_r, j_r), (th_g, res_g, ok_g, j_g) = ref, got
    assert th_g.shape == th_r.shape and torch.isfinite(th_g).all()
    assert torch.equal(ok_r, ok_g)
    d = th_g - th_r
    norm_rel = (d.norm(dim=-1) / th_r.norm(dim=-1)).max().item()
    assert norm_rel <= rel, f"relative error {norm_rel:.2e} > {rel:.0e}"
    assert d.abs().max().item() <= abs_, f"max error {d.abs().max().item():.2e} > {abs_:.0e}"
    assert (res_g - res_r).abs().max().item() <= max(abs_, 1e-5)
    dj = (j_g - j_r).abs().max().item()  # metres
    assert dj <= max(10 * abs_, 1e-4), f"joint error {dj:.2e} m"


# ---------------------------------------------------------------------- buckets
def test_buckets():
    assert BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert [bucket_for(b) for b in (1, 2, 3, 5, 16, 17, 200, 256)] == [1, 2, 4, 8, 16, 32,
                                                                       256, 256]
    with pytest.raises(ValueError):
        bucket_for(0)
    assert chunks(600) == [slice(0, 256), slice(256, 512), slice(512, 600)]
    x = torch.arange(6.0).reshape(3, 2)
    p, = pad_rows([x], 4)
    assert torch.equal(p[:3], x) and torch.equal(p[3], x[2])


# ---------------------------------------------------------------------- flat module
def test_flat_module_is_the_fitter(fitter, streams):
    state = EagerEngine(fitter).initial_state(3)
    batch = streams.batch(0, state)
    from engines.flat import flat_inputs

    with torch.no_grad():
        a = fitter(batch.signals, batch.betas, batch.T_hmd, state.theta, state.hidden,
                   batch.reset, motion_prev=state.motion, dt=batch.dt)
        b = FlatFit(fitter)(*flat_inputs(batch, fitter.body.num_betas))
    for x, y in zip((a.theta, a.hidden, a.motion, a.residual, a.ok), b[:5], strict=True):
        assert torch.equal(x, y)


def test_wire_outputs_match_the_numpy_kinematics(fitter, streams):
    """pose / transl / joints of a fit equal Θ converted with NumPy in float64, with the
    floor offset taken off every y."""
    import numpy as np
    from numpy_kinematics import JointChain

    from tracker.geometry.arrays import rot6d_to_matrix

    engine = EagerEngine(fitter)
    batch = streams.batch(0, engine.initial_state(3))
    batch.floor = torch.tensor([0.0, 0.1, -0.05])
    res = engine.fit(batch)
    th = res.theta.double().numpy()
    R = rot6d_to_matrix(th[:, :312].reshape(3, 52, 6))
    transl = th[:, 312:] - np.stack([np.zeros(3), batch.floor.numpy(), np.zeros(3)], -1)
    J = JointChain(fitter.body.parents).joints(
        R, fitter.body.rest_joints(batch.betas).double().numpy(), transl)
    assert res.joints.dtype == torch.float32 and res.pose.shape == (3, 156)
    assert np.allclose(res.transl.numpy(), transl, atol=1e-6)
    assert np.allclose(res.joints.numpy(), J.reshape(3, 156), atol=1e-5)
    from tracker.geometry.rotations import axis_angle_to_matrix

    R_wire = axis_angle_to_matrix(res.pose.double().reshape(3, 52, 3)).numpy()
    assert np.allclose(R_wire, R, atol=1e-5)


def test_compiled_formulation_matches_eager(fitter):
    """While compiling, tiny matmuls become broadcast sums: the same fit."""
    from unittest import mock

    x = example_inputs(fitter, 5)
    flat = FlatFit(fitter)
    with torch.no_grad():
        a = flat(*x)
        with mock.patch("torch.compiler.is_compiling", return_value=True):
            b = flat(*x)
    for u, v in zip(a, b, strict=True):
        assert torch.allclose(u.float(), v.float(), atol=1e-5)


def test_betas_are_padded_without_changing_the_fit(fitter, streams):
    state = EagerEngine(fitter).initial_state(3)
    batch = streams.batch(0, state)
    batch.betas = batch.betas[:, :10].clone()
    from engines.flat import flat_inputs

    with torch.no_grad():
        a = fitter(batch.signals, batch.betas, batch.T_hmd, state.theta, state.hidden,
                   batch.reset, motion_prev=state.motion, dt=batch.dt)
        b = FlatFit(fitter)(*flat_inputs(batch, fitter.body.num_betas))
    assert torch.allclose(a.theta, b[0], atol=1e-6)


# ---------------------------------------------------------------------- hot path
@pytest.mark.parametrize("kind", ["open-style", "with-posedirs"])
def test_tangent_vjp_matches_autograd_on_every_joint(kind, tmp_path):
    """The subtree-sum reverse pass with gradients on all 52 joints and tips (the data term
    only ever loads three joints), float64, against autograd through the forward pass."""
    from synthetic_models import write_amass_npz, write_open_style_npz

    from tracker.body.kinematics_vjp import kinematics_vjp_tangent, rotation_6d_vjp_tangent
    from tracker.geometry import rotation_6d_to_matrix

    f64 = torch.float64
    path = (write_open_style_npz(tmp_path / "a.npz") if kind == "open-style"
            else write_amass_npz(tmp_path / "model.npz", num_vertices=6890))
    body = load_body_model(path, dtype=f64)
    g = torch.Generator().manual_seed(0)
    d6 = torch.randn(3, 52, 6, dtype=f64, generator=g)
    betas = torch.randn(3, 8, dtype=f64, generator=g)
    transl = torch.randn(3, 3, dtype=f64, generator=g)
    gR, gt = torch.randn(3, 52, 3, 3, dtype=f64, generator=g), torch.randn(3, 52, 3, dtype=f64)
    gtips = torch.randn(3, 2, 5, 3, dtype=f64, generator=g)
    x = d6.clone().requires_grad_(True)
    tr = transl.clone().requires_grad_(True)
    st = body(rotation_6d_to_matrix(x), betas, tr)
    loss = (st.rotations * gR).sum() + (st.joints * gt).sum() + (st.tips * gtips).sum()
    ref_d6, ref_tr = torch.autograd.grad(loss, (x, tr))
    R = rotation_6d_to_matrix(d6)
    st = body(R, betas, transl)
    g_w, g_tr = kinematics_vjp_tangent(body, R, betas, st.rotations, st.joints, gR, gt, gtips)
    assert torch.allclose(rotation_6d_vjp_tangent(d6, R, g_w), ref_d6, rtol=1e-9, atol=1e-10)
    assert torch.allclose(g_tr, ref_tr, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------- cache
class FakeEngine(CompiledEngine):
    """A compiled engine whose 'artifact' is a text file and whose runner is eager FlatFit."""

    name = backend = "fake"
    artifact = "fake.txt"

    def __init__(self, fitter, cache=None, buckets=BUCKETS):
        super().__init__(fitter, cache, verbose=False)
        self.buckets = buckets
        self.built, self.calls = [], []

    def _build(self, path, bucket):
        self.built.append(bucket)
        path.write_text(f"bucket {bucket}")

    def _load(self, path, bucket):
        assert path.read_text() == f"bucket {bucket}"
        flat = FlatFit(self.fitter)

        def runner(*xs):
            self.calls.append(xs[0].shape[0])
            return flat(*xs)

        return runner


def test_bucketed_engine_pads_and_chunks(fitter, streams, tmp_path):
    eager = EagerEngine(fitter)
    fake = FakeEngine(fitter, tmp_path, buckets=(1, 2))
    a, b = run(eager, streams, frames=4), run(fake, streams, frames=4)
    assert fake.calls[:2] == [2, 1]  # 3 sessions, largest bucket 2: chunks of 2 and 1
    assert_parity(a, b, 1e-6, 1e-6)
    fake4 = FakeEngine(fitter, tmp_path / "b", buckets=(1, 2, 4))
    assert_parity(a, run(fake4, streams, frames=4), 1e-6, 1e-6)
    assert set(fake4.calls) == {4}  # 3 sessions padded to the bucket of 4


def test_cache_builds_once_and_reloads(fitter, tmp_path):
    first = FakeEngine(fitter, tmp_path)
    first.warmup([1, 3])
    assert first.built == [1, 4]
    second = FakeEngine(fitter, tmp_path)
    second.warmup([1, 3])
    assert second.built == [] and [e["built"] for e in second.build_log] == [False, False]
    entries = EngineCache(tmp_path).entries()
    assert len(entries) == 2 and {e["key"]["bucket"] for e in entries} == {1, 4}


def test_stale_or_corrupt_cache_is_rebuilt(fitter, tmp_path):
    FakeEngine(fitter, tmp_path).warmup([1])
    cache = EngineCache(tmp_path)
    (entry,) = cache.entries()
    # a corrupt artifact (the hash in meta.json no longer matches)
    path = tmp_path / "fake" / entry["path"].split("/")[-1] / "fake.txt"
    path.write_text("bucket 1 but truncated")
    e = FakeEngine(fitter, tmp_path)
    e.warmup([1])
    assert e.built == [1]
    # an entry whose key differs (another torch, another source) is never used and is pruned
    meta_path = path.parent / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"]["versions"]["torch"] = "0.0-other"
    stale_dir = tmp_path / "fake" / "stale-entry"
    stale_dir.mkdir()
    (stale_dir / "meta.json").write_text(json.dumps(meta))
    (stale_dir / "fake.txt").write_text("bucket 1")
    e2 = FakeEngine(fitter, tmp_path)
    e2.warmup([1])
    assert e2.built == []  # the valid entry is found by its own key
    path.write_text("tampered")
    e3 = FakeEngine(fitter, tmp_path)
    e3.warmup([1])
    assert e3.built == [1] and not stale_dir.exists()  # rebuilt; same-slot stale entry pruned


def test_cache_key_follows_the_weights(fitter, tmp_path):
    import copy

    other = copy.deepcopy(fitter)
    with torch.no_grad():
        other.delta_head.bias.add_(1e-3)
    assert fitter_fingerprint(other) != fitter_fingerprint(fitter)
    FakeEngine(fitter, tmp_path).warmup([1])
    e = FakeEngine(other, tmp_path)
    e.warmup([1])
    assert e.built == [1]
    assert FakeEngine(fitter, tmp_path).cache_key(1)["checkpoint"] == fitter_fingerprint(fitter)


def test_cache_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FITSTREAM_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c"
    monkeypatch.delenv("FITSTREAM_CACHE")
    assert default_root().parts[-3:] == (".cache", "fitstream", "engines")


# ---------------------------------------------------------------------- registry
def test_make_engine_names(fitter):
    assert make_engine("eager", fitter).name == "eager"
    with pytest.raises(EngineError, match="unknown engine 'nope'"):
        make_engine("nope", fitter)
    assert resolve_engine_name("auto") in ("tensorrt", "onnxruntime", "inductor", "eager")
    assert resolve_engine_name("ort") == "onnxruntime"


def test_auto_falls_back_when_a_build_fails(fitter, monkeypatch, tmp_path):
    import engines.registry as base

    class Broken(FakeEngine):
        def _build(self, path, bucket):
            raise RuntimeError("compiler exploded")

    monkeypatch.setitem(base.ENGINES, "broken", lambda f, **kw: Broken(f, kw["cache"]))
    monkeypatch.setattr(base, "AUTO_ORDER", ("broken",))
    monkeypatch.setattr(base, "available_engines", lambda: {"broken": None, "eager": None})
    with pytest.warns(UserWarning, match="compiler exploded"):
        assert make_engine("auto", fitter, cache=tmp_path).name == "eager"
    with pytest.raises(EngineError, match="'broken' failed to build: compiler exploded"):
        make_engine("broken", fitter, cache=tmp_path)
    assert not list((tmp_path / "fake").glob("*/meta.json"))  # nothing half-built is kept


def test_a_light_fit_that_fails_to_build_ends_the_ladder(fitter, monkeypatch, tmp_path):
    """The ladder stays a prefix of the one asked for (a recorded level keeps its fit): a
    light fit that fails leaves out the lighter ones, with a warning; counts come sorted."""
    import engines.registry as base

    class BrokenAt(FakeEngine):
        def _build(self, path, bucket):
            if self.fitter.cfg.iterations == 2:
                raise RuntimeError("compiler exploded")
            super()._build(path, bucket)

    monkeypatch.setitem(base.ENGINES, "fake", lambda f, **kw: BrokenAt(f, kw["cache"]))
    monkeypatch.setattr(base, "available_engines", lambda: {"fake": None, "eager": None})
    big = fitter.with_iterations(5)
    assert make_engine("fake", big, cache=tmp_path, light_iterations=(1, 3)).iterations == (
        5, 3, 1)
    with pytest.warns(UserWarning, match="light fit \\(2 iterations\\).*lighter one"):
        engine = make_engine("fake", big, cache=tmp_path, light_iterations=(3, 2, 1))
    assert engine.iterations == (5, 3) and engine.rungs[1] is engine.light


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT can run here")
def test_tensorrt_without_cuda_is_a_clear_error(fitter):
    why = tensorrt_missing()
    if not torch.cuda.is_available():
        assert "CUDA" in why
    with pytest.raises(EngineError, match="engine 'tensorrt' cannot run here: needs"):
        make_engine("tensorrt", fitter)
    with pytest.raises(EngineError, match="CUDA|torch-tensorrt"):
        make_engine("tensorrt-fp16", fitter)


def test_fp16_network_recipe_bound(body):
    """The FP16 recipe (networks in half, kinematics and state in float) stays in its bound.

    Runs the half networks in eager on the CPU: the same arithmetic TensorRT FP16 runs."""
    torch.manual_seed(0)
    f = NeuralFitter(body, FitterConfig(hidden=256, layers=2)).eval()
    s = make_streams(body, sessions=2, frames=12, seed=5)
    ref = EagerEngine(f)
    assert_parity(run(ref, s), run(EagerEngine(half_network(f)), s, teacher=ref), FP16_REL,
                  FP16_ABS)


def test_bench_command_json(tmp_path):
    from tracker.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--engine", "eager", "--batch", "1", "2", "--seconds", "0.05",
                 "--rounds", "1", "--hidden", "32", "--iterations", "2",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert isinstance(data["machine"], str)
    assert [(r["engine"], r["batch"]) for r in data["results"]] == [("eager", 1), ("eager", 2)]
    for r in data["results"]:
        assert {"engine", "batch", "p50_ms", "p99_ms", "fits_per_s"} <= set(r)
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["fits_per_s"] > 0


# ---------------------------------------------------------------------- CPU backends
@pytest.mark.slow
@needs_onnxruntime
def test_onnxruntime_matches_eager(fitter, streams, cache_dir):
    engine = make_engine("onnxruntime", fitter, cache=cache_dir)
    check_engine(engine, EagerEngine(fitter), streams, FP32_REL, FP32_REL)
    again = make_engine("onnxruntime", fitter, cache=cache_dir)
    again.warmup([1])
    assert [e["built"] for e in again.build_log] == [False]


@pytest.mark.slow
@needs_inductor
def test_inductor_matches_eager(fitter, streams, cache_dir):
    engine = make_engine("inductor", fitter, cache=cache_dir)
    assert [e["bucket"] for e in engine.build_log] == ["1-256"]  # one dynamic-batch build
    check_engine(engine, EagerEngine(fitter), streams, FP32_REL, FP32_REL)
    single = make_streams(fitter.body, sessions=1, frames=4, seed=4)
    assert_parity(run(EagerEngine(fitter), single), run(engine, single), FP32_REL, FP32_REL)
    # the package is called directly (engines.inductor.direct_runner): the same outputs as
    # its documented __call__, and no garbage for the cyclic collector in a tick
    import gc

    path = engine.cache.path_for(engine.cache_key("1-256")) / engine.artifact
    package = torch._inductor.aoti_load_package(str(path))
    x = example_inputs(fitter, 3)
    direct = engine.runner("1-256")
    assert all(torch.equal(a, b) for a, b in zip(direct(*x), package(*x), strict=True))
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            direct(*x)
        gc.collect()
        assert gc.garbage == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


# ---------------------------------------------------------------------- TensorRT (GPU)
@pytest.fixture(scope="module")
def gpu_fitter(fitter):
    import copy

    return copy.deepcopy(fitter).cuda()


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision,rel,abs_", [("fp32", FP32_REL, FP32_REL),
                                                ("fp16", FP16_REL, FP16_ABS)])
def test_tensorrt_matches_eager(gpu_fitter, fitter, streams, cache_dir, precision, rel, abs_):
    name = "tensorrt" if precision == "fp32" else "tensorrt-fp16"
    engine = make_engine(name, gpu_fitter, cache=cache_dir)
    assert engine.build_log[0]["bucket"] == 1
    check_engine(engine, EagerEngine(fitter), streams, rel, abs_)  # 3 sessions: bucket 4
    assert [e["bucket"] for e in engine.build_log] == [1, 4]


@pytest.mark.gpu
@needs_tensorrt
def test_tensorrt_cache_and_cuda_graph_outputs(gpu_fitter, streams, cache_dir):
    make_engine("tensorrt", gpu_fitter, cache=cache_dir).warmup([4])
    engine = make_engine("tensorrt", gpu_fitter, cache=cache_dir)
    engine.warmup([4])
    assert [e["built"] for e in engine.build_log] == [False, False]  # both from the cache
    first = engine.fit(streams.batch(0, engine.initial_state(3)))
    kept = first.theta.clone()
    engine.fit(streams.batch(1, first.state))
    assert torch.equal(first.theta, kept)  # graph replays do not overwrite earlier results


@pytest.mark.gpu
@needs_tensorrt
def test_tensorrt_example_inputs_build(gpu_fitter):
    x = example_inputs(gpu_fitter, 1, device="cuda")
    assert all(t.is_cuda for t in x)
