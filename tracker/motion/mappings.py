"""Joint mappings from BVH skeletons to SMPL+H: built-in profiles and user JSON files.

A mapping names, for some SMPL+H joints, the BVH joint at the same anatomical place::

    {"joints": {"left_knee": "LeftLeg", ...}, "up": "y", "unit": "cm", "weights": {...}}

``up`` (``"y"`` or ``"z"``, the file's world up axis) and ``unit`` (``"m"``, ``"cm"``,
``"mm"``, ``"in"`` or metres per file unit as a number) are optional: both are detected from
the motion when absent. ``weights`` (optional) scale a joint's share of the fit (default 1).
SMPL+H joints absent from a mapping are left to the fit. End sites are named
``<parent>_end``. BVH names match ignoring case, ``_`` / spaces and any ``namespace:`` prefix
(``mixamorig:LeftArm`` == ``LeftArm``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tracker.body.joints import JOINT_NAMES

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "inch": 0.0254}
_FINGERS = ("index", "middle", "ring", "pinky")


def _side(fmt: dict[str, str]) -> dict[str, str]:
    """Expand ``{"{s}_knee": "{S}Knee"}`` for both sides: s = left/right, S, x per profile."""
    out = {}
    for side, v in (("left", dict(S="Left", s="l", X="L")), ("right", dict(S="Right", s="r",
                                                                           X="R"))):
        for k, name in fmt.items():
            out[k.format(s=side)] = name.format(**v)
    return out


def _fingers(pattern: str, names: dict[str, str], segments=(1, 2, 3)) -> dict[str, str]:
    """``{s}_<finger><i>`` -> pattern with ``{F}`` (BVH finger name) and ``{i}``."""
    return {f"{{s}}_{f}{i}": pattern.format(F=names[f], i=seg, S="{S}", s="{s}", X="{X}")
            for f in (*_FINGERS, "thumb") for i, seg in zip((1, 2, 3), segments, strict=True)}


_ICLONE = {
    "pelvis": "CC_Base_Pelvis", "spine1": "CC_Base_Waist", "spine2": "CC_Base_Spine01",
    "spine3": "CC_Base_Spine02", "neck": "CC_Base_NeckTwist01", "head": "CC_Base_Head",
    **_side({"{s}_hip": "CC_Base_{X}_Thigh", "{s}_knee": "CC_Base_{X}_Calf",
             "{s}_ankle": "CC_Base_{X}_Foot", "{s}_foot": "CC_Base_{X}_ToeBase",
             "{s}_collar": "CC_Base_{X}_Clavicle", "{s}_shoulder": "CC_Base_{X}_Upperarm",
             "{s}_elbow": "CC_Base_{X}_Forearm", "{s}_wrist": "CC_Base_{X}_Hand",
             **_fingers("CC_Base_{X}_{F}{i}", dict(index="Index", middle="Mid", ring="Ring",
                                                  pinky="Pinky", thumb="Thumb"))}),
}
# Poser / DAZ-style (CMU dance set): two finger segments, toes as the foot's end site.
_POSER = {
    "pelvis": "hip", "spine3": "abdomen", "neck": "neck", "head": "head",
    **_side({"{s}_hip": "{s}Thigh", "{s}_knee": "{s}Shin", "{s}_ankle": "{s}Foot",
             "{s}_foot": "{s}Foot_end", "{s}_collar": "{s}Collar", "{s}_shoulder": "{s}Shldr",
             "{s}_elbow": "{s}ForeArm", "{s}_wrist": "{s}Hand",
             **{f"{{s}}_{f}{i}": f"{{s}}{n}{i}" for f, n in zip(
                 (*_FINGERS, "thumb"), ("Index", "Mid", "Ring", "Pinky", "Thumb"), strict=True)
                for i in (1, 2)},
             **{f"{{s}}_{f}3": f"{{s}}{n}2_end" for f, n in zip(
                 (*_FINGERS, "thumb"), ("Index", "Mid", "Ring", "Pinky", "Thumb"), strict=True)}}),
}
# CMU "MotionBuilder-friendly" BVH (cgspeed): 1 unit = 1/0.45 inch; a sparse hand.
_CGSPEED = {
    "pelvis": "Hips", "spine2": "Spine", "spine3": "Spine1", "neck": "Neck1", "head": "Head",
    **_side({"{s}_hip": "{S}UpLeg", "{s}_knee": "{S}Leg", "{s}_ankle": "{S}Foot",
             "{s}_foot": "{S}ToeBase", "{s}_collar": "{S}Shoulder", "{s}_shoulder": "{S}Arm",
             "{s}_elbow": "{S}ForeArm", "{s}_wrist": "{S}Hand",
             "{s}_middle1": "{S}HandIndex1_end", "{s}_thumb2": "{X}Thumb_end"}),
}
# CMU ASF/AMC skeleton converted to BVH as is (bone names as joints: a joint sits where its
# bone starts, e.g. ``lfemur`` at the hip). ``lhipjoint``, ``lowerneck`` and ``lclavicle``
# start at the root or thorax; the hand's orientation is ``lhand`` (``lwrist`` only twists
# the forearm).
_CMU_ASF = {
    "pelvis": "hip", "spine1": "lowerback", "spine2": "upperback", "spine3": "thorax",
    "neck": "upperneck", "head": "head",
    **_side({"{s}_hip": "{s}femur", "{s}_knee": "{s}tibia", "{s}_ankle": "{s}foot",
             "{s}_foot": "{s}toes", "{s}_collar": "{s}clavicle", "{s}_shoulder": "{s}humerus",
             "{s}_elbow": "{s}radius", "{s}_wrist": "{s}hand"}),
}
_MIXAMO = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck",
    "head": "Head",
    **_side({"{s}_hip": "{S}UpLeg", "{s}_knee": "{S}Leg", "{s}_ankle": "{S}Foot",
             "{s}_foot": "{S}ToeBase", "{s}_collar": "{S}Shoulder", "{s}_shoulder": "{S}Arm",
             "{s}_elbow": "{S}ForeArm", "{s}_wrist": "{S}Hand",
             **_fingers("{S}Hand{F}{i}", dict(index="Index", middle="Middle", ring="Ring",
                                              pinky="Pinky", thumb="Thumb"))}),
}


@dataclass
class Mapping:
    """A resolved or unresolved BVH -> SMPL+H joint mapping.

    Attributes:
        name: profile name or file path. joints: SMPL+H joint name -> BVH joint name.
        weights: SMPL+H joint name -> fit weight (default 1). up: ``"y"``, ``"z"`` or None
        (detect). unit: metres per file unit, or None (detect).
    """

    name: str
    joints: dict[str, str]
    weights: dict[str, float] = field(default_factory=dict)
    up: str | None = None
    unit: float | None = None
    description: str = ""
    exact: bool = False
    """The BVH joints sit exactly where the SMPL+H joints are (files written by this project's
    writer): no joint-placement offsets and only a weak shape prior in the fit."""


PROFILES: dict[str, Mapping] = {
    "smplh": Mapping("smplh", {n: n for n in JOINT_NAMES}, exact=True,
                     description="SMPL+H names (this project's BVH writer)"),
    "iclone-cc": Mapping("iclone-cc", _ICLONE, {"neck": 0.5, "spine1": 0.5, "spine2": 0.5,
                                                "spine3": 0.5, "pelvis": 0.5},
                         unit=0.01,
                         description="Reallusion iClone / Character Creator (CC_Base_*)"),
    "poser": Mapping("poser", _POSER, {"pelvis": 0.5, "spine3": 0.5, "neck": 0.5,
                                       "left_foot": 0.5, "right_foot": 0.5},
                     description="Poser / DAZ style (hip, abdomen, chest, lShldr, ...)"),
    "cmu-cgspeed": Mapping("cmu-cgspeed", _CGSPEED, {"spine2": 0.5, "spine3": 0.5, "neck": 0.5,
                                                     "left_collar": 0.3, "right_collar": 0.3,
                                                     "left_middle1": 0.5, "right_middle1": 0.5,
                                                     "left_thumb2": 0.2, "right_thumb2": 0.2},
                           unit=0.0254 / 0.45,
                           description="CMU MotionBuilder-friendly BVH (cgspeed; Hips, "
                                       "LeftUpLeg, LHipJoint, ...)"),
    "cmu-asf": Mapping("cmu-asf", _CMU_ASF, {"spine1": 0.3, "spine2": 0.5, "spine3": 0.5,
                                             "neck": 0.5, "left_collar": 0.3,
                                             "right_collar": 0.3},
                       unit=0.0254 / 0.45,
                       description="CMU ASF/AMC skeleton as BVH (hip, lfemur, ltibia, "
                                   "lowerback, thorax, upperneck, lhumerus, lradius, ...)"),
    "mixamo": Mapping("mixamo", _MIXAMO, {"spine1": 0.5, "spine2": 0.5, "spine3": 0.5},
                      description="Mixamo (mixamorig:Hips, LeftArm, LeftHandIndex1, ...)"),
}


def normalize_name(name: str) -> str:
    """Name used for matching: no namespace prefix, lower case, no ``_``, ``-``, spaces."""
    return re.sub(r"[\s_\-.]", "", name.rsplit(":", 1)[-1]).lower()


def parse_unit(u) -> float | None:
    """``"cm"`` / ``"m"`` / ``"mm"`` / ``"in"`` / a number (metres per unit) -> float."""
    if u is None:
        return None
    if isinstance(u, int | float):
        if u <= 0:
            raise ValueError(f"unit must be positive, got {u}")
        return float(u)
    if str(u).lower() not in UNITS:
        raise ValueError(f"unknown unit {u!r}; expected one of {sorted(UNITS)} or a number")
    return UNITS[str(u).lower()]


def mapping_from_dict(d: dict, name: str = "<mapping>") -> Mapping:
    """A :class:`Mapping` from a JSON-like dict; raises ``ValueError`` on bad content."""
    if not isinstance(d, dict) or not isinstance(d.get("joints"), dict) or not d["joints"]:
        raise ValueError(f"{name}: expected {{\"joints\": {{\"<SMPL+H joint>\": \"<BVH joint>\", "
                         "...}}, \"up\": \"y\"|\"z\", \"unit\": \"cm\"|\"m\"}}")
    bad = sorted(k for k in d["joints"] if k not in JOINT_NAMES)
    if bad:
        raise ValueError(f"{name}: unknown SMPL+H joints {bad}; valid names: "
                         f"{', '.join(JOINT_NAMES)}")
    up = d.get("up")
    if up is not None and str(up).lower() not in ("y", "z"):
        raise ValueError(f"{name}: 'up' must be \"y\" or \"z\", got {up!r}")
    weights = {k: float(v) for k, v in d.get("weights", {}).items()}
    return Mapping(name, {k: str(v) for k, v in d["joints"].items()}, weights,
                   None if up is None else str(up).lower(), parse_unit(d.get("unit")),
                   exact=bool(d.get("exact", False)))


def load_mapping(spec: str | Path) -> Mapping:
    """A built-in profile by name, or a user JSON file. Raises ``ValueError``."""
    if str(spec) in PROFILES:
        return PROFILES[str(spec)]
    p = Path(spec)
    if not p.is_file():
        raise ValueError(f"mapping {spec!r} is neither a built-in profile "
                         f"({', '.join(PROFILES)}) nor a JSON file")
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the mapping: {exc}") from None
    return mapping_from_dict(d, str(p))


def resolve(mapping: Mapping, bvh_names: list[str]) -> tuple[dict[int, int], list[str]]:
    """Match a mapping against a file's joints.

    Returns:
        ``({smplh_index: bvh_index}, missing)``: the SMPL+H joints whose BVH joint exists in
        the file, and the mapped BVH names that it lacks.
    """
    exact = {n: i for i, n in enumerate(bvh_names)}
    loose: dict[str, int] = {}
    for i, n in enumerate(bvh_names):
        loose.setdefault(normalize_name(n), i)
    out, missing = {}, []
    for smpl, b in mapping.joints.items():
        i = exact.get(b, loose.get(normalize_name(b)))
        if i is None:
            missing.append(b)
        else:
            out[JOINT_NAMES.index(smpl)] = i
    return out, missing


def detect_profile(bvh_names: list[str]) -> Mapping | None:
    """The built-in profile that matches most body joints of a file (at least 10), or None."""
    best, best_n = None, 9
    for m in PROFILES.values():
        found, _ = resolve(m, bvh_names)
        n = sum(1 for j in found if j < 22)
        if n > best_n:
            best, best_n = m, n
    return best
