// Wire protocol v1 (docs/protocol.md) without a serializer: the Unity runtime decodes
// MessagePack into plain maps (IDictionary with string keys, IList arrays, boxed numbers)
// and these classes check and read them; headset frames are built as such maps for the
// runtime to encode. No UnityEngine, NetMQ or MessagePack types here.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Fitstream.Tracker.Core
{
    /// <summary>Reading decoded MessagePack maps: every accessor gives null on a missing or
    /// mistyped value, so that a check names the first bad key.</summary>
    public static class WireMap
    {
        public const int Version = 1;
        static readonly Regex SessionRe = new Regex(@"^[A-Za-z0-9._-]{1,64}\z");

        public static bool IsValidSession(string s) { return s != null && SessionRe.IsMatch(s); }

        static bool IsNumber(object o)
        {
            return o is double || o is float || o is long || o is int || o is short || o is sbyte
                || o is ulong || o is uint || o is ushort || o is byte;
        }

        static bool IsInteger(object o)
        {
            return o is long || o is int || o is short || o is sbyte || o is ulong || o is uint
                || o is ushort || o is byte;
        }

        public static object Get(IDictionary map, string key) { return map.Contains(key) ? map[key] : null; }

        public static long? Integer(IDictionary map, string key)
        {
            object o = Get(map, key);
            return IsInteger(o) ? (long?)Convert.ToInt64(o) : null;
        }

        public static string String(IDictionary map, string key) { return Get(map, key) as string; }

        /// <summary>An array of n finite numbers (n &lt; 0: any length), or null.</summary>
        public static double[] Numbers(IDictionary map, string key, int n)
        {
            var list = Get(map, key) as IList;
            if (list == null || (n >= 0 && list.Count != n)) return null;
            var a = new double[list.Count];
            for (int i = 0; i < a.Length; i++)
            {
                if (!IsNumber(list[i])) return null;
                a[i] = Convert.ToDouble(list[i]);
                if (double.IsNaN(a[i]) || double.IsInfinity(a[i])) return null;
            }
            return a;
        }
    }

    /// <summary>A checked pose/&lt;session&gt; message. Arrays: transl 3 (stage, metres),
    /// pose 156 (AMASS axis-angle, radians), joints 156 (stage, metres), betas.</summary>
    public sealed class PoseMessage
    {
        public string Session, State;
        public long Seq, T;
        public double[] Transl, Pose, Joints, Betas;

        /// <summary>The message, or null with error naming the first bad key.</summary>
        public static PoseMessage FromMap(IDictionary map, out string error)
        {
            error = null;
            if (map == null) { error = "not a map"; return null; }
            if (WireMap.Integer(map, "v") != WireMap.Version) { error = "v must be 1"; return null; }
            var m = new PoseMessage { Session = WireMap.String(map, "session") };
            if (!WireMap.IsValidSession(m.Session)) { error = "bad session"; return null; }
            long? seq = WireMap.Integer(map, "seq"), t = WireMap.Integer(map, "t");
            if (seq == null || t == null) { error = "seq and t must be integers"; return null; }
            m.Seq = seq.Value; m.T = t.Value;
            m.Transl = WireMap.Numbers(map, "transl", 3);
            m.Pose = WireMap.Numbers(map, "pose", 156);
            m.Joints = WireMap.Numbers(map, "joints", 156);
            m.Betas = WireMap.Numbers(map, "betas", -1) ?? new double[0];
            if (m.Transl == null) error = "transl must be 3 finite numbers";
            else if (m.Pose == null) error = "pose must be 156 finite numbers";
            else if (m.Joints == null) error = "joints must be 156 finite numbers";
            m.State = WireMap.String(map, "state") ?? "ok";
            return error == null ? m : null;
        }
    }

    /// <summary>A checked skeleton/&lt;session&gt; message: the body's rest skeleton (52
    /// SMPL+H joints in the wire's order, parents, rest positions at zero pose and zero
    /// translation, body frame, metres).</summary>
    public sealed class SkeletonMessage
    {
        public string Session;
        public double[] Rest, Betas;
        public object Frame, PoseLayout;

        public static SkeletonMessage FromMap(IDictionary map, out string error)
        {
            error = null;
            if (map == null) { error = "not a map"; return null; }
            if (WireMap.Integer(map, "v") != WireMap.Version) { error = "v must be 1"; return null; }
            var m = new SkeletonMessage { Session = WireMap.String(map, "session") };
            if (!WireMap.IsValidSession(m.Session)) { error = "bad session"; return null; }
            var names = WireMap.Get(map, "joints") as IList;
            if (names == null || names.Count != HumanoidMap.JointCount) { error = "joints must name 52 joints"; return null; }
            for (int j = 0; j < names.Count; j++)
                if (!(names[j] is string) || (string)names[j] != HumanoidMap.SmplJointNames[j])
                { error = "joint " + j + " is not " + HumanoidMap.SmplJointNames[j]; return null; }
            double[] parents = WireMap.Numbers(map, "parents", HumanoidMap.JointCount);
            if (parents == null) { error = "parents must be 52 integers"; return null; }
            for (int j = 0; j < parents.Length; j++)
                if (parents[j] != HumanoidMap.Parents[j]) { error = "parent of joint " + j + " differs"; return null; }
            m.Rest = WireMap.Numbers(map, "rest", 156);
            if (m.Rest == null) { error = "rest must be 156 finite numbers"; return null; }
            if (WireMap.String(map, "units") != "m") { error = "units must be \"m\""; return null; }
            m.Betas = WireMap.Numbers(map, "betas", -1) ?? new double[0];
            m.Frame = WireMap.Get(map, "frame");
            m.PoseLayout = WireMap.Get(map, "pose_layout");
            return m;
        }
    }

    /// <summary>One tracked hand as XR Hands reports it, Unity frame (XR session space):
    /// the wrist pose (OpenXR XR_HAND_JOINT_WRIST convention once converted) and the five
    /// fingertips (thumb, index, middle, ring, little) or null.</summary>
    public sealed class HandSample
    {
        public Vec3 WristPosition;
        public Quat WristRotation = Quat.Identity;
        public Vec3[] Tips;
        public bool Tracked = true;
    }

    /// <summary>Device -> tracker frames as maps for MessagePack: integer v, seq and t;
    /// positions and rotations converted from Unity to the stage frame; nil for a lost
    /// hand.</summary>
    public static class HeadsetFrame
    {
        /// <summary>px py pz qx qy qz qw in the stage frame from a Unity-frame pose.</summary>
        public static double[] StagePose7(Vec3 unityPosition, Quat unityRotation)
        {
            Vec3 p = Frames.UnityToStage(unityPosition);
            Quat q = Frames.UnityToStage(unityRotation.Normalized);
            return new[] { p.X, p.Y, p.Z, q.X, q.Y, q.Z, q.W };
        }

        /// <summary>The frame map. head: the VIEW (centre eye) pose, Unity frame; left/right:
        /// null when the hand is lost (sent as nil). seq: strictly increasing (SeqClock);
        /// tNs: capture time, ns, monotonic clock.</summary>
        public static Dictionary<string, object> Build(string session, long seq, long tNs,
            Vec3 headPosition, Quat headRotation, HandSample left, HandSample right)
        {
            if (!WireMap.IsValidSession(session))
                throw new ArgumentException("session must be 1-64 chars of [A-Za-z0-9._-]");
            return new Dictionary<string, object> {
                { "v", (long)WireMap.Version }, { "session", session }, { "seq", seq }, { "t", tNs },
                { "head", StagePose7(headPosition, headRotation) },
                { "left", Hand(left) }, { "right", Hand(right) },
            };
        }

        static object Hand(HandSample h)
        {
            if (h == null) return null;
            var d = new Dictionary<string, object> {
                { "wrist", StagePose7(h.WristPosition, h.WristRotation) }, { "tracked", h.Tracked },
            };
            if (h.Tips != null && h.Tips.Length == 5)
            {
                var tips = new double[15];
                for (int i = 0; i < 5; i++)
                {
                    Vec3 p = Frames.UnityToStage(h.Tips[i]);
                    tips[3 * i] = p.X; tips[3 * i + 1] = p.Y; tips[3 * i + 2] = p.Z;
                }
                d["tips"] = tips;
            }
            return d;
        }
    }

    /// <summary>seq for a device session that stays strictly increasing across Play-mode
    /// restarts: seq = max(last + 1, monotonic milliseconds, persisted last + 1). The
    /// monotonic clock runs on across restarts of the app (not of the machine); the
    /// persisted value (PlayerPrefs in Unity) covers a clock that started again.</summary>
    public sealed class SeqClock
    {
        long last;

        public SeqClock(long persistedLast) { last = Math.Max(0, persistedLast); }

        public long Last { get { return last; } }

        public long Next(long monotonicNs)
        {
            last = Math.Max(last + 1, monotonicNs / 1000000);
            return last;
        }
    }

    /// <summary>Nanoseconds of the process-independent monotonic clock (Stopwatch).</summary>
    public static class MonotonicClock
    {
        public static long NowNs()
        {
            long ticks = Stopwatch.GetTimestamp(), f = Stopwatch.Frequency;
            return ticks / f * 1000000000L + ticks % f * 1000000000L / f;
        }
    }
}
