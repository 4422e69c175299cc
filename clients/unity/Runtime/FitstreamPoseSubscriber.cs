// Drives a Humanoid Animator (body and fingers) from the tracker's pose/<session> and
// skeleton/<session> topics. NetMQ receives on a background thread; MessagePack-CSharp
// decodes into plain maps that the core checks (Core/Wire.cs); the bone rotations come from
// the core's SMPL+H -> HumanBodyBones map (Core/BodyMapping.cs), applied in LateUpdate.
//
// Frames: the pose is in the stage frame (right-handed, +Y up, metres). The core maps it to
// the Unity image of the stage; `stage` says where that image sits in the scene (normally the
// XR Origin, whose tracking origin is the floor).

using System;
using System.Collections;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using Fitstream.Tracker.Core;
using MessagePack;
using MessagePack.Resolvers;
using NetMQ;
using NetMQ.Sockets;
using UnityEngine;

namespace Fitstream.Tracker
{
    [AddComponentMenu("Fitstream/Pose Subscriber")]
    public sealed class FitstreamPoseSubscriber : MonoBehaviour
    {
        [Tooltip("The tracker's publish address (tracker serve --publish).")]
        public string address = "tcp://127.0.0.1:5556";

        [Tooltip("The session to follow; empty: the first one that arrives.")]
        public string session = "";

        [Tooltip("A Humanoid Animator standing in its T-pose when the component wakes " +
                 "(default: the one on this object). Give it no Animator Controller.")]
        public Animator animator;

        [Tooltip("Where the stage's origin (floor, play-area centre) is in the scene: " +
                 "normally the XR Origin. Default: this object's parent, else this object.")]
        public Transform stage;

        [Tooltip("Move the hips to the tracked pelvis (else only rotations are applied).")]
        public bool moveHips = true;

        [Tooltip("Scale the hips' height by the avatar's leg length over the user's, so that " +
                 "a smaller or taller avatar keeps its feet on the floor.")]
        public bool scaleHipsHeight = true;

        /// <summary>The session being shown (null until a pose arrived).</summary>
        public string FollowedSession { get; private set; }

        /// <summary>seq of the last applied pose; the last problem with a message, or null.</summary>
        public long LastSeq { get; private set; }
        public string LastError { get { return lastError; } }

        readonly object gate = new object();
        readonly Dictionary<string, SkeletonMessage> skeletons = new Dictionary<string, SkeletonMessage>();
        PoseMessage latest;
        string followed;
        volatile string lastError;
        volatile bool running;
        Thread thread;

        readonly Transform[] bones = new Transform[HumanoidMap.JointCount];
        readonly Quaternion[] tpose = new Quaternion[HumanoidMap.JointCount];
        readonly Vec3[] positions = new Vec3[HumanoidMap.JointCount];
        readonly Quat[] rotations = new Quat[HumanoidMap.JointCount];
        float avatarLeg;
        Vec3[] rest;
        double[] restBetas;
        SkeletonMessage restSkeleton;

        void Awake()
        {
            if (animator == null) animator = GetComponent<Animator>();
            if (stage == null) stage = transform.parent != null ? transform.parent : transform;
            if (animator == null || !animator.isHuman)
            {
                Debug.LogError("Fitstream: the Pose Subscriber needs a Humanoid Animator", this);
                enabled = false;
                return;
            }
            // T-pose rotation of each bone relative to the avatar root (which faces +Z)
            Quaternion rootInverse = Quaternion.Inverse(animator.transform.rotation);
            for (int j = 0; j < HumanoidMap.JointCount; j++)
            {
                var id = (HumanBodyBones)Enum.Parse(typeof(HumanBodyBones), HumanoidMap.Bones[j]);
                bones[j] = animator.GetBoneTransform(id);
                if (bones[j] != null) tpose[j] = rootInverse * bones[j].rotation;
            }
            avatarLeg = Distance(HumanBodyBones.LeftUpperLeg, HumanBodyBones.LeftLowerLeg)
                      + Distance(HumanBodyBones.LeftLowerLeg, HumanBodyBones.LeftFoot);
        }

        float Distance(HumanBodyBones a, HumanBodyBones b)
        {
            Transform ta = animator.GetBoneTransform(a), tb = animator.GetBoneTransform(b);
            return ta != null && tb != null ? Vector3.Distance(ta.position, tb.position) : 0f;
        }

        void OnEnable()
        {
            if (!string.IsNullOrEmpty(session) && !WireMap.IsValidSession(session))
            {
                Debug.LogError("Fitstream: session must be 1-64 chars of [A-Za-z0-9._-]", this);
                enabled = false;
                return;
            }
            lock (gate) followed = string.IsNullOrEmpty(session) ? null : session;
            NetMQLifetime.Acquire();
            running = true;
            thread = new Thread(Receive) { IsBackground = true, Name = "Fitstream pose subscriber" };
            thread.Start();
        }

        void OnDisable()
        {
            if (thread == null) return;
            running = false;
            thread.Join(1000);
            thread = null;
            NetMQLifetime.Release();
        }

        // Background thread: receive, decode, check; keep the newest pose and each session's
        // skeleton. Exact topic match (a ZeroMQ prefix filter would also pass "pose/me2").
        void Receive()
        {
            try
            {
                using (var sub = new SubscriberSocket())
                {
                    sub.Options.Linger = TimeSpan.Zero;
                    sub.Connect(address);
                    sub.Subscribe("pose/" + session);
                    sub.Subscribe("skeleton/" + session);
                    var frames = new List<byte[]>();
                    while (running)
                    {
                        if (!sub.TryReceiveMultipartBytes(TimeSpan.FromMilliseconds(100), ref frames))
                            continue;
                        if (frames.Count < 2) continue;
                        Handle(Encoding.UTF8.GetString(frames[0]), frames[frames.Count - 1]);
                    }
                }
            }
            catch (Exception e)
            {
                lastError = "subscriber stopped: " + e.Message;
            }
        }

        void Handle(string topic, byte[] payload)
        {
            IDictionary map;
            try
            {
                map = MessagePackSerializer.Deserialize<object>(payload, ContractlessStandardResolver.Options) as IDictionary;
            }
            catch (Exception e)
            {
                lastError = topic + ": not MessagePack (" + e.Message + ")";
                return;
            }
            string error;
            if (topic.StartsWith("pose/", StringComparison.Ordinal))
            {
                PoseMessage m = PoseMessage.FromMap(map, out error);
                if (m == null || topic != "pose/" + m.Session) { lastError = topic + ": " + (error ?? "topic and session differ"); return; }
                lock (gate)
                {
                    if (followed == null) followed = m.Session;  // "" subscribes to all: take the first
                    if (m.Session == followed) latest = m;
                }
            }
            else if (topic.StartsWith("skeleton/", StringComparison.Ordinal))
            {
                SkeletonMessage s = SkeletonMessage.FromMap(map, out error);
                if (s == null || topic != "skeleton/" + s.Session) { lastError = topic + ": " + (error ?? "topic and session differ"); return; }
                lock (gate) skeletons[s.Session] = s;
            }
        }

        void LateUpdate()
        {
            PoseMessage m;
            SkeletonMessage skeleton;
            lock (gate)
            {
                m = latest;
                latest = null;
                if (m == null) return;
                skeletons.TryGetValue(m.Session, out skeleton);
            }
            if (FollowedSession != m.Session)
            {
                FollowedSession = m.Session;
                Debug.Log("Fitstream: following session '" + m.Session + "'" +
                          (string.IsNullOrEmpty(session) ? " (the first seen; set Session to pick another)" : ""), this);
            }
            Vec3[] r = RestFor(m, skeleton);
            BodyMapping.UnityBones(m.Pose, m.Joints, r, positions, rotations);
            Quat[] world = BodyMapping.UnityWorldRotations(rotations);
            Quaternion stageRotation = stage.rotation;
            for (int j = 0; j < HumanoidMap.JointCount; j++)  // parents before children
                if (bones[j] != null)
                    bones[j].rotation = stageRotation * UnityConversions.ToUnity(world[j]) * tpose[j];
            if (moveHips && bones[HumanoidMap.Hips] != null)
            {
                Vector3 p = UnityConversions.ToUnity(positions[HumanoidMap.Hips]);
                double userLeg = (r[1] - r[4]).Length + (r[4] - r[7]).Length;  // hip-knee-ankle
                if (scaleHipsHeight && avatarLeg > 0 && userLeg > 0) p.y *= (float)(avatarLeg / userLeg);
                bones[HumanoidMap.Hips].position = stage.TransformPoint(p);
            }
            LastSeq = m.Seq;
        }

        // The rest skeleton: the skeleton message's when one came for this session, else
        // recovered from the pose itself (cached while the betas stay the same).
        Vec3[] RestFor(PoseMessage m, SkeletonMessage skeleton)
        {
            if (skeleton != null)
            {
                if (skeleton != restSkeleton) { rest = BodyMapping.RestFromArray(skeleton.Rest); restSkeleton = skeleton; restBetas = null; }
                return rest;
            }
            if (rest == null || restSkeleton != null || restBetas == null || !Same(restBetas, m.Betas))
            {
                rest = BodyMapping.RestFromPose(m.Pose, m.Transl, m.Joints);
                restBetas = m.Betas;
                restSkeleton = null;
            }
            return rest;
        }

        static bool Same(double[] a, double[] b)
        {
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) return false;
            return true;
        }
    }
}
