// Engine-independent 3-vectors and quaternions in double precision (no UnityEngine types),
// so that this folder compiles alone with plain Mono (tools/test_csharp.sh).
using System;

namespace Fitstream.Tracker.Core
{
    /// <summary>A 3-vector (x, y, z). The frame is the caller's: see Frames for the stage,
    /// Unity and body frames.</summary>
    public struct Vec3
    {
        public double X, Y, Z;

        public Vec3(double x, double y, double z) { X = x; Y = y; Z = z; }

        public static readonly Vec3 Zero = new Vec3(0, 0, 0);

        public static Vec3 operator +(Vec3 a, Vec3 b) { return new Vec3(a.X + b.X, a.Y + b.Y, a.Z + b.Z); }
        public static Vec3 operator -(Vec3 a, Vec3 b) { return new Vec3(a.X - b.X, a.Y - b.Y, a.Z - b.Z); }
        public static Vec3 operator -(Vec3 a) { return new Vec3(-a.X, -a.Y, -a.Z); }
        public static Vec3 operator *(double s, Vec3 a) { return new Vec3(s * a.X, s * a.Y, s * a.Z); }

        public static double Dot(Vec3 a, Vec3 b) { return a.X * b.X + a.Y * b.Y + a.Z * b.Z; }

        public static Vec3 Cross(Vec3 a, Vec3 b)
        {
            return new Vec3(a.Y * b.Z - a.Z * b.Y, a.Z * b.X - a.X * b.Z, a.X * b.Y - a.Y * b.X);
        }

        public double Length { get { return Math.Sqrt(Dot(this, this)); } }

        public Vec3 Normalized { get { return (1.0 / Length) * this; } }

        /// <summary>Element i of a flat array of 3-vectors (x0 y0 z0 x1 ...).</summary>
        public static Vec3 At(double[] flat, int i) { return new Vec3(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]); }

        public override string ToString() { return string.Format("({0:G6}, {1:G6}, {2:G6})", X, Y, Z); }
    }

    /// <summary>A rotation quaternion x y z w (Hamilton product; a * b applies b first).</summary>
    public struct Quat
    {
        public double X, Y, Z, W;

        public Quat(double x, double y, double z, double w) { X = x; Y = y; Z = z; W = w; }

        public static readonly Quat Identity = new Quat(0, 0, 0, 1);

        public static Quat operator *(Quat a, Quat b)
        {
            return new Quat(
                a.W * b.X + a.X * b.W + a.Y * b.Z - a.Z * b.Y,
                a.W * b.Y - a.X * b.Z + a.Y * b.W + a.Z * b.X,
                a.W * b.Z + a.X * b.Y - a.Y * b.X + a.Z * b.W,
                a.W * b.W - a.X * b.X - a.Y * b.Y - a.Z * b.Z);
        }

        /// <summary>The inverse of a unit quaternion.</summary>
        public Quat Conjugate { get { return new Quat(-X, -Y, -Z, W); } }

        public double Length { get { return Math.Sqrt(X * X + Y * Y + Z * Z + W * W); } }

        public Quat Normalized
        {
            get { double n = Length; return new Quat(X / n, Y / n, Z / n, W / n); }
        }

        /// <summary>The vector v rotated by this unit quaternion (same frame in and out).</summary>
        public Vec3 Rotate(Vec3 v)
        {
            var u = new Vec3(X, Y, Z);
            Vec3 t = 2.0 * Vec3.Cross(u, v);
            return v + W * t + Vec3.Cross(u, t);
        }

        /// <summary>Axis-angle (axis times angle, radians) to a unit quaternion; exact near
        /// zero angle (sin(a/2)/a by its series).</summary>
        public static Quat FromAxisAngle(Vec3 aa)
        {
            double a2 = Vec3.Dot(aa, aa), a = Math.Sqrt(a2);
            double s = a < 1e-4 ? 0.5 - a2 / 48.0 : Math.Sin(0.5 * a) / a;
            return new Quat(s * aa.X, s * aa.Y, s * aa.Z, Math.Cos(0.5 * a));
        }

        /// <summary>The smallest rotation taking direction a onto direction b (lengths
        /// ignored). Opposite directions have no unique answer and throw.</summary>
        public static Quat ShortestArc(Vec3 a, Vec3 b)
        {
            a = a.Normalized; b = b.Normalized;
            double c = Vec3.Dot(a, b);
            if (c < -1.0 + 1e-9) throw new ArgumentException("ShortestArc: opposite directions");
            Vec3 axis = Vec3.Cross(a, b);
            // q = (a x b, 1 + a.b) normalised: half the angle between a and b
            return new Quat(axis.X, axis.Y, axis.Z, 1.0 + c).Normalized;
        }

        /// <summary>Element i of a flat array of quaternions (x0 y0 z0 w0 x1 ...).</summary>
        public static Quat At(double[] flat, int i)
        {
            return new Quat(flat[4 * i], flat[4 * i + 1], flat[4 * i + 2], flat[4 * i + 3]);
        }

        public override string ToString() { return string.Format("({0:G6}, {1:G6}, {2:G6}, {3:G6})", X, Y, Z, W); }
    }
}
