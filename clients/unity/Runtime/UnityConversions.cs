// Component copies between the core's double-precision structs and UnityEngine's types.
// No change of frame happens here: the core's Frames class does that, explicitly.

using Fitstream.Tracker.Core;
using UnityEngine;

namespace Fitstream.Tracker
{
    public static class UnityConversions
    {
        public static Vector3 ToUnity(Vec3 v) { return new Vector3((float)v.X, (float)v.Y, (float)v.Z); }

        public static Quaternion ToUnity(Quat q)
        {
            return new Quaternion((float)q.X, (float)q.Y, (float)q.Z, (float)q.W);
        }

        public static Vec3 ToCore(Vector3 v) { return new Vec3(v.x, v.y, v.z); }

        public static Quat ToCore(Quaternion q) { return new Quat(q.x, q.y, q.z, q.w); }
    }

    /// <summary>NetMQ set-up shared by the components: AsyncIO's managed sockets (needed
    /// under Unity's Mono) before the first socket, and one NetMQConfig.Cleanup after the
    /// last one is gone (cleaning up earlier would close the other component's sockets).</summary>
    static class NetMQLifetime
    {
        static int users;

        public static void Acquire()
        {
            if (users++ == 0) AsyncIO.ForceDotNet.Force();
        }

        public static void Release()
        {
            if (--users == 0) NetMQ.NetMQConfig.Cleanup(false);
        }
    }
}
