// SMPL+H pose -> Unity humanoid bone transforms, line for line as tracker/vmc/mapping.py
// (whose module notes explain the frames and the thumb; both are checked against
// Tests~/golden_vectors.txt, written by tools/make_golden_vectors.py).

using System;

namespace Fitstream.Tracker.Core
{
    public static class BodyMapping
    {
        /// <summary>VRM 1.0 T-pose thumb directions, body frame: level, 45 deg between the
        /// sideways axis and +Z (vrm-specification VRMC_vrm-1.0/tpose.md, definition 1.8).</summary>
        public static readonly Vec3[] VrmThumbDirections = {
            new Vec3(Math.Sqrt(0.5), 0, Math.Sqrt(0.5)), new Vec3(-Math.Sqrt(0.5), 0, Math.Sqrt(0.5)),
        };

        /// <summary>AMASS pose (156 axis-angle numbers, radians) -> 52 local rotations, body
        /// frame: joint j's rotation from its T-pose in its parent's frame (root: global).</summary>
        public static Quat[] LocalRotations(double[] pose)
        {
            Check(pose, 156, "pose");
            var q = new Quat[HumanoidMap.JointCount];
            for (int j = 0; j < q.Length; j++) q[j] = Quat.FromAxisAngle(Vec3.At(pose, j));
            return q;
        }

        /// <summary>Local rotations -> global ones, G_j = G_parent(j) * L_j (any frame).</summary>
        public static Quat[] GlobalRotations(Quat[] local)
        {
            var g = new Quat[local.Length];
            for (int j = 0; j < local.Length; j++)
            {
                int p = HumanoidMap.Parents[j];
                g[j] = p < 0 ? local[j] : g[p] * local[j];
            }
            return g;
        }

        /// <summary>The rest joints (52, body frame, metres: zero pose, zero translation) from
        /// one pose message: pose (156), transl (3) and posed joints (156, stage frame):
        /// r_j - r_parent = G_parent^T (J_j - J_parent), r_0 = J_0 - transl. Equals the
        /// skeleton message's rest up to float32 rounding.</summary>
        public static Vec3[] RestFromPose(double[] pose, double[] transl, double[] joints)
        {
            Check(transl, 3, "transl");
            Check(joints, 156, "joints");
            Quat[] g = GlobalRotations(LocalRotations(pose));
            var rest = new Vec3[HumanoidMap.JointCount];
            rest[0] = Vec3.At(joints, 0) - Vec3.At(transl, 0);
            for (int j = 1; j < rest.Length; j++)
            {
                int p = HumanoidMap.Parents[j];
                rest[j] = rest[p] + g[p].Conjugate.Rotate(Vec3.At(joints, j) - Vec3.At(joints, p));
            }
            return rest;
        }

        /// <summary>A flat rest array (156: the skeleton message's rest) as 52 vectors.</summary>
        public static Vec3[] RestFromArray(double[] rest)
        {
            Check(rest, 156, "rest");
            var r = new Vec3[HumanoidMap.JointCount];
            for (int j = 0; j < r.Length; j++) r[j] = Vec3.At(rest, j);
            return r;
        }

        /// <summary>D for the left and right hand (body frame): the shortest arc from the rest
        /// thumb (thumb1 -> thumb3) onto the VRM T-pose thumb.</summary>
        public static Quat[] ThumbCorrections(Vec3[] rest)
        {
            var d = new Quat[2];
            for (int s = 0; s < 2; s++)
            {
                int[] t = HumanoidMap.Thumbs[s];
                d[s] = Quat.ShortestArc(rest[t[2]] - rest[t[0]], VrmThumbDirections[s]);
            }
            return d;
        }

        /// <summary>Local rotations relative to the humanoid (VRM) T-pose, body frame:
        /// SMPL+H's, with each thumb re-based: proximal R D^-1, the others D R D^-1.</summary>
        public static Quat[] HumanoidRotations(double[] pose, Vec3[] rest)
        {
            Quat[] l = LocalRotations(pose);
            Quat[] d = ThumbCorrections(rest);
            for (int s = 0; s < 2; s++)
            {
                int[] t = HumanoidMap.Thumbs[s];
                l[t[0]] = l[t[0]] * d[s].Conjugate;
                l[t[1]] = d[s] * l[t[1]] * d[s].Conjugate;
                l[t[2]] = d[s] * l[t[2]] * d[s].Conjugate;
            }
            return l;
        }

        /// <summary>Rest bone offsets of the humanoid T-pose skeleton, body frame, metres:
        /// rest_j - rest_parent (Hips: the rest pelvis); the thumbs' intermediate and distal
        /// offsets swung by D.</summary>
        public static Vec3[] HumanoidOffsets(Vec3[] rest)
        {
            var off = new Vec3[HumanoidMap.JointCount];
            off[0] = rest[0];
            for (int j = 1; j < off.Length; j++) off[j] = rest[j] - rest[HumanoidMap.Parents[j]];
            Quat[] d = ThumbCorrections(rest);
            for (int s = 0; s < 2; s++)
            {
                int[] t = HumanoidMap.Thumbs[s];
                off[t[1]] = d[s].Rotate(off[t[1]]);
                off[t[2]] = d[s].Rotate(off[t[2]]);
            }
            return off;
        }

        /// <summary>Unity local transforms of the 52 bones (HumanoidMap.Bones order) as a
        /// normalised (VRM) avatar holds them, what /VMC/Ext/Bone/Pos carries: Hips relative
        /// to an identity root at the Unity origin (position: the pelvis joint seen in Unity,
        /// rotation HipsTurn * BodyToAvatar(G_0)); the others the rest offset and the rotation
        /// from the T-pose, in the parent's frame. pose: 156 axis-angle; joints: 156 posed,
        /// stage frame; rest: 52 rest joints, body frame.</summary>
        public static void UnityBones(double[] pose, double[] joints, Vec3[] rest,
                                      Vec3[] positions, Quat[] rotations)
        {
            Check(joints, 156, "joints");
            Quat[] r = HumanoidRotations(pose, rest);
            Vec3[] off = HumanoidOffsets(rest);
            for (int j = 0; j < HumanoidMap.JointCount; j++)
            {
                rotations[j] = Frames.BodyToAvatar(r[j]);
                positions[j] = Frames.BodyToAvatar(off[j]);
            }
            rotations[0] = Frames.HipsTurn * rotations[0];
            positions[0] = Frames.StageToUnity(Vec3.At(joints, 0));
        }

        /// <summary>Unity local rotations (UnityBones) -> Unity world rotations relative to
        /// the T-pose: W_b = W_parent * L_b. An avatar whose bones are not identity in its
        /// T-pose takes bone.rotation = stage.rotation * W_b * tpose_b, tpose_b being the
        /// bone's T-pose rotation relative to the avatar's root (which faces +Z).</summary>
        public static Quat[] UnityWorldRotations(Quat[] local) { return GlobalRotations(local); }

        static void Check(double[] a, int n, string what)
        {
            if (a == null || a.Length != n)
                throw new ArgumentException(what + " must hold " + n + " numbers");
        }
    }
}
