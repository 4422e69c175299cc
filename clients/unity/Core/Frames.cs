// Frames of reference and the maps between them (the same as tracker/vmc/mapping.py).
//
// Stage frame (the wire protocol, OpenXR STAGE): right-handed, +Y up, metres, floor at y = 0.
// Body frame (SMPL+H): the stage frame's axes; at zero global orientation the body faces +Z
//   and its left is at +X.
// Unity world: left-handed, +Y up, metres. Stage -> Unity: p -> (x, y, -z),
//   q -> (-x, -y, z, w); the same maps take Unity back to the stage.
// Avatar frame: a Unity humanoid in its T-pose faces +Z with its left hand at -X: the body
//   frame mirrored in X. Body -> avatar: rotation q -> (x, -y, -z, w), offset v -> (-x, y, z).

namespace Fitstream.Tracker.Core
{
    public static class Frames
    {
        /// <summary>Stage position (right-handed) -> Unity world (left-handed): (x, y, -z).
        /// Its own inverse.</summary>
        public static Vec3 StageToUnity(Vec3 p) { return new Vec3(p.X, p.Y, -p.Z); }

        /// <summary>Unity world position -> stage: (x, y, -z).</summary>
        public static Vec3 UnityToStage(Vec3 p) { return new Vec3(p.X, p.Y, -p.Z); }

        /// <summary>Stage rotation -> Unity world: (-x, -y, z, w). Its own inverse.</summary>
        public static Quat StageToUnity(Quat q) { return new Quat(-q.X, -q.Y, q.Z, q.W); }

        /// <summary>Unity world rotation -> stage: (-x, -y, z, w).</summary>
        public static Quat UnityToStage(Quat q) { return new Quat(-q.X, -q.Y, q.Z, q.W); }

        /// <summary>Body-frame rotation R -> avatar frame S_x R S_x: (x, -y, -z, w).</summary>
        public static Quat BodyToAvatar(Quat q) { return new Quat(q.X, -q.Y, -q.Z, q.W); }

        /// <summary>Body-frame vector -> avatar frame: (-x, y, z).</summary>
        public static Vec3 BodyToAvatar(Vec3 v) { return new Vec3(-v.X, v.Y, v.Z); }

        /// <summary>Ry(180 deg): the turn from the avatar's frame (faces +Z) to the Unity image
        /// of the stage, where an unturned body faces -Z. The hips' rotation relative to an
        /// identity root is HipsTurn * BodyToAvatar(global orientation).</summary>
        public static readonly Quat HipsTurn = new Quat(0, 1, 0, 0);
    }
}
