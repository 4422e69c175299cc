// Tests of the engine-independent core (clients/unity/Core) under plain Mono, against the
// golden vectors that tools/make_golden_vectors.py writes from the Python side (the same
// file tests/test_vmc.py checks). Run by tools/test_csharp.sh:
//     mono CoreTests.exe golden_vectors.txt
// Prints one line per check and exits non-zero on any failure.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Fitstream.Tracker.Core;

static class CoreTests
{
    static int passed, failed;

    static void Check(string name, bool ok, string detail = "")
    {
        if (ok) passed++; else failed++;
        Console.WriteLine((ok ? "PASS " : "FAIL ") + name + (ok || detail == "" ? "" : ": " + detail));
    }

    static double[] Numbers(IEnumerable<string> xs)
    {
        return xs.Select(x => double.Parse(x, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();
    }

    // ---------------------------------------------------------------- golden file
    sealed class Golden
    {
        public string[] Bones, Smplh;
        public int[] Parents;
        public List<double[]> Positions = new List<double[]>(), Rotations = new List<double[]>();
        public Dictionary<string, Dictionary<string, double[]>> Cases =
            new Dictionary<string, Dictionary<string, double[]>>();
    }

    static Golden Read(string path)
    {
        var g = new Golden();
        Dictionary<string, double[]> current = null;
        foreach (string line in File.ReadAllLines(path))
        {
            string[] f = line.Split((char[])null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 0) continue;
            string[] rest = f.Skip(1).ToArray();
            switch (f[0])
            {
                case "golden": if (rest[0] != "1") throw new Exception("golden version " + rest[0]); break;
                case "bones": g.Bones = rest; break;
                case "smplh": g.Smplh = rest; break;
                case "parents": g.Parents = rest.Select(int.Parse).ToArray(); break;
                case "position": g.Positions.Add(Numbers(rest)); break;
                case "rotation": g.Rotations.Add(Numbers(rest)); break;
                case "case": current = g.Cases[rest[0]] = new Dictionary<string, double[]>(); break;
                case "end": current = null; break;
                default: current[f[0]] = Numbers(rest); break;
            }
        }
        return g;
    }

    static double MaxDiff(Vec3[] a, double[] flat)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, (a[i] - Vec3.At(flat, i)).Length);
        return m;
    }

    // q and -q are the same rotation
    static double MaxDiff(Quat[] a, double[] flat)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            Quat b = Quat.At(flat, i);
            double plus = 0, minus = 0;
            double[] x = { a[i].X, a[i].Y, a[i].Z, a[i].W }, y = { b.X, b.Y, b.Z, b.W };
            for (int k = 0; k < 4; k++) { plus += Math.Abs(x[k] - y[k]); minus += Math.Abs(x[k] + y[k]); }
            m = Math.Max(m, Math.Min(plus, minus));
        }
        return m;
    }

    static void TestGolden(Golden g)
    {
        Check("bone names = golden", g.Bones.SequenceEqual(HumanoidMap.Bones));
        Check("SMPL+H joint names = golden", g.Smplh.SequenceEqual(HumanoidMap.SmplJointNames));
        Check("parents = golden", g.Parents.SequenceEqual(HumanoidMap.Parents));
        Check("52 distinct bones, 30 on the fingers",
              HumanoidMap.Bones.Distinct().Count() == 52
              && HumanoidMap.Bones.Count(b => b.Contains("Thumb") || b.Contains("Index")
                 || b.Contains("Middle") || b.Contains("Ring") || b.Contains("Little")) == 30);
        foreach (double[] r in g.Positions)
        {
            Vec3 u = Frames.StageToUnity(new Vec3(r[0], r[1], r[2]));
            Check("stage -> Unity position", MaxDiff(new[] { u }, r.Skip(3).ToArray()) < 1e-15);
            Vec3 back = Frames.UnityToStage(u);
            Check("Unity -> stage position", MaxDiff(new[] { back }, r) < 1e-15);
        }
        foreach (double[] r in g.Rotations)
        {
            Quat u = Frames.StageToUnity(new Quat(r[0], r[1], r[2], r[3]));
            Check("stage -> Unity rotation", MaxDiff(new[] { u }, r.Skip(4).ToArray()) < 1e-15);
        }
        Check("golden cases present", g.Cases.Count == 4 && g.Cases.ContainsKey("tpose")
              && g.Cases.ContainsKey("arms_down") && g.Cases.ContainsKey("fist"));
        foreach (var kv in g.Cases)
        {
            string n = kv.Key;
            var c = kv.Value;
            Vec3[] rest = BodyMapping.RestFromArray(c["rest"]);
            double e = MaxDiff(BodyMapping.RestFromPose(c["pose"], c["transl"], c["joints"]), c["rest"]);
            Check(n + ": rest from the pose message", e < 1e-9, "max error " + e);

            Quat[] d = BodyMapping.ThumbCorrections(rest);
            double de = 0;
            for (int s = 0; s < 2; s++)
                for (int col = 0; col < 3; col++)
                {   // column col of D is D applied to basis vector col
                    var basis = new Vec3(col == 0 ? 1 : 0, col == 1 ? 1 : 0, col == 2 ? 1 : 0);
                    Vec3 v = d[s].Rotate(basis);
                    double[] m = c["thumb"];
                    de = Math.Max(de, Math.Abs(v.X - m[9 * s + col]) + Math.Abs(v.Y - m[9 * s + 3 + col])
                                    + Math.Abs(v.Z - m[9 * s + 6 + col]));
                }
            Check(n + ": thumb corrections", de < 1e-9, "max error " + de);

            var pos = new Vec3[52];
            var rot = new Quat[52];
            BodyMapping.UnityBones(c["pose"], c["joints"], rest, pos, rot);
            e = MaxDiff(pos, c["local_pos"]);
            Check(n + ": Unity local bone positions", e < 1e-9, "max error " + e);
            e = MaxDiff(rot, c["local_rot"]);
            Check(n + ": Unity local bone rotations", e < 1e-9, "max error " + e);
            Quat[] w = BodyMapping.UnityWorldRotations(rot);
            e = MaxDiff(w, c["world_rot"]);
            Check(n + ": Unity world rotations", e < 1e-9, "max error " + e);
            Check(n + ": unit quaternions", rot.All(q => Math.Abs(q.Length - 1) < 1e-12));

            // Unity forward kinematics of the bones lands on the posed joints seen in Unity
            var p = new Vec3[52];
            double fk = 0;
            for (int j = 0; j < 52; j++)
            {
                int par = HumanoidMap.Parents[j];
                p[j] = par < 0 ? pos[j] : p[par] + w[par].Rotate(pos[j]);
                fk = Math.Max(fk, (p[j] - Frames.StageToUnity(Vec3.At(c["joints"], j))).Length);
            }
            Check(n + ": Unity FK reproduces the posed joints", fk < 1e-9, "max error " + fk);
        }
        // known poses, by hand: the left upper arm of "arms down" is +90 deg about Unity +Z
        var a = g.Cases["arms_down"];
        var ap = new Vec3[52];
        var ar = new Quat[52];
        BodyMapping.UnityBones(a["pose"], a["joints"], BodyMapping.RestFromArray(a["rest"]), ap, ar);
        Vec3 down = ar[HumanoidMap.IndexOfBone("LeftUpperArm")].Rotate(new Vec3(-1, 0, 0));
        Check("arms down: the avatar's left arm (-X) points down", (down - new Vec3(0, -1, 0)).Length < 1e-12);
        Check("T-pose: the hips turn 180 deg about Y",
              MaxDiff(new[] { Frames.HipsTurn }, g.Cases["tpose"]["local_rot"].Take(4).ToArray()) < 1e-12);
    }

    // ---------------------------------------------------------------- wire
    static object[] Floats(int n, float value)
    {
        return Enumerable.Repeat((object)value, n).ToArray();
    }

    static Dictionary<object, object> PoseMap()
    {   // the shapes MessagePack-CSharp's untyped decoding gives: object keys, object[] arrays
        return new Dictionary<object, object> {
            { "v", (byte)1 }, { "session", "me" }, { "seq", (ushort)7 }, { "t", 123456789012L },
            { "transl", Floats(3, 0.5f) }, { "pose", Floats(156, 0.0f) }, { "joints", Floats(156, 0.1f) },
            { "betas", Floats(16, 0.0f) }, { "visible", new object[] { true, false } }, { "state", "ok" },
        };
    }

    static Dictionary<object, object> SkeletonMap()
    {
        return new Dictionary<object, object> {
            { "v", 1 }, { "session", "me" }, { "joints", HumanoidMap.SmplJointNames.Cast<object>().ToArray() },
            { "parents", HumanoidMap.Parents.Select(p => (object)(long)p).ToArray() },
            { "rest", Floats(156, 0.2f) }, { "betas", Floats(16, 0.0f) }, { "units", "m" },
            { "frame", "body" }, { "pose_layout", "amass" },
        };
    }

    static void TestWire()
    {
        string err;
        PoseMessage m = PoseMessage.FromMap(PoseMap(), out err);
        Check("pose message read", m != null && m.Seq == 7 && m.T == 123456789012L && m.Pose.Length == 156
              && Math.Abs(m.Joints[5] - 0.1) < 1e-7 && m.Session == "me", err ?? "");
        var bad = new List<KeyValuePair<string, object>> {
            new KeyValuePair<string, object>("v", 2), new KeyValuePair<string, object>("session", "a b"),
            new KeyValuePair<string, object>("seq", 1.5), new KeyValuePair<string, object>("pose", Floats(155, 0f)),
            new KeyValuePair<string, object>("joints", Floats(156, float.NaN)),
            new KeyValuePair<string, object>("transl", new object[] { 1.0, "x", 2.0 }),
        };
        foreach (var kv in bad)
        {
            var map = PoseMap();
            map[kv.Key] = kv.Value;
            Check("pose message with a bad " + kv.Key + " refused",
                  PoseMessage.FromMap(map, out err) == null && err != null);
        }
        var missing = PoseMap();
        missing.Remove("joints");
        Check("pose message without joints refused", PoseMessage.FromMap(missing, out err) == null && err.Contains("joints"));

        SkeletonMessage s = SkeletonMessage.FromMap(SkeletonMap(), out err);
        Check("skeleton message read", s != null && s.Rest.Length == 156 && (string)s.PoseLayout == "amass", err ?? "");
        var wrong = SkeletonMap();
        var names = HumanoidMap.SmplJointNames.Cast<object>().ToArray();
        names[22] = "left_pinky1";  // the AMASS hand order is index, middle, pinky, ring, thumb
        wrong["joints"] = names;
        Check("skeleton with another joint order refused", SkeletonMessage.FromMap(wrong, out err) == null
              && err.Contains("joint 22"));
        wrong = SkeletonMap();
        wrong["units"] = "cm";
        Check("skeleton in other units refused", SkeletonMessage.FromMap(wrong, out err) == null);
        wrong = SkeletonMap();
        wrong["parents"] = Enumerable.Repeat((object)0L, 52).ToArray();
        Check("skeleton with other parents refused", SkeletonMessage.FromMap(wrong, out err) == null);

        // a headset frame: integers, stage frame, nil for a lost hand
        var tips = Enumerable.Range(0, 5).Select(i => new Vec3(i, 1, 2)).ToArray();
        var left = new HandSample { WristPosition = new Vec3(0.1, 1.2, 0.3),
                                    WristRotation = new Quat(0.1, 0.2, 0.3, 0.9), Tips = tips };
        Dictionary<string, object> f = HeadsetFrame.Build("me", 42, 1000000000L,
            new Vec3(0, 1.6, 0.5), new Quat(0, 0.7071067811865476, 0, 0.7071067811865476), left, null);
        Check("frame: v, seq and t are integers", f["v"] is long && f["seq"] is long && (long)f["t"] == 1000000000L);
        var head = (double[])f["head"];
        Check("frame: head converted to the stage frame",
              Math.Abs(head[2] + 0.5) < 1e-15 && Math.Abs(head[4] + 0.7071067811865476) < 1e-15
              && Math.Abs(head[6] - 0.7071067811865476) < 1e-15);
        Check("frame: a lost hand is nil", f.ContainsKey("right") && f["right"] == null);
        var l = (Dictionary<string, object>)f["left"];
        var wrist = (double[])l["wrist"];
        var q = new Quat(0.1, 0.2, 0.3, 0.9).Normalized;
        Check("frame: wrist converted", Math.Abs(wrist[2] + 0.3) < 1e-15 && Math.Abs(wrist[3] + q.X) < 1e-12
              && Math.Abs(wrist[5] - q.Z) < 1e-12 && (bool)l["tracked"]);
        var t = (double[])l["tips"];
        Check("frame: tips converted", t.Length == 15 && t[12] == 4 && t[14] == -2);
        bool threw = false;
        try { HeadsetFrame.Build("", 1, 1, Vec3.Zero, Quat.Identity, null, null); }
        catch (ArgumentException) { threw = true; }
        Check("frame: an empty session is refused", threw);
    }

    static void TestSeq()
    {
        // Play mode 1: 90 Hz on a clock at 10 s, and bursts faster than the clock
        var a = new SeqClock(0);
        var seen = new List<long>();
        long ns = 10000000000L;
        for (int i = 0; i < 200; i++, ns += 11111111) seen.Add(a.Next(ns));
        for (int i = 0; i < 50; i++) seen.Add(a.Next(ns));  // same instant: still increasing
        // Play mode 2 (same process, clock runs on) with the persisted last seq
        var b = new SeqClock(a.Last);
        seen.Add(b.Next(ns + 5000000));
        // Play mode 3 after the clock started again (a new boot), persisted value only
        var c = new SeqClock(b.Last);
        seen.Add(c.Next(1000));
        // no persistence at all, same boot: the clock alone keeps it increasing
        var d = new SeqClock(0);
        seen.Add(d.Next(ns + 20000000000L));
        bool increasing = true;
        for (int i = 1; i < seen.Count; i++) increasing &= seen[i] > seen[i - 1];
        Check("seq strictly increasing across restarts", increasing);
        long t0 = MonotonicClock.NowNs(), t1 = MonotonicClock.NowNs();
        Check("monotonic clock in ns", t0 > 0 && t1 >= t0);
    }

    static int Main(string[] args)
    {
        string golden = args.Length > 0 ? args[0] : "golden_vectors.txt";
        try
        {
            TestGolden(Read(golden));
            TestWire();
            TestSeq();
        }
        catch (Exception ex)
        {
            failed++;
            Console.WriteLine("FAIL unexpected exception: " + ex);
        }
        Console.WriteLine(string.Format("C# core: {0} passed, {1} failed", passed, failed));
        return failed == 0 ? 0 : 1;
    }
}
