// Publishes this headset's frames to the tracker (device -> tracker, docs/protocol.md): the
// head's VIEW (centre eye) pose from the XR input devices, and per hand the wrist pose and
// five fingertips from XR Hands (com.unity.xr.hands), converted from Unity to the OpenXR
// stage frame by the core (Core/Wire.cs HeadsetFrame): p -> (x, y, -z), q -> (-x, -y, z, w).
//
// - seq and t are integers: t is the monotonic clock in ns at sampling; seq comes from
//   SeqClock, which keeps it increasing across Play-mode restarts (monotonic milliseconds,
//   and the last value persisted in PlayerPrefs under "fitstream.seq.<session>").
// - a hand that XR Hands does not track is sent as nil; its tips are left out while any
//   fingertip pose is missing.
// - poses are in XR session space: set the XR Origin's Tracking Origin Mode to Floor so
//   that y = 0 is the floor, as the stage frame wants.

using System;
using System.Collections.Generic;
using Fitstream.Tracker.Core;
using MessagePack;
using MessagePack.Resolvers;
using NetMQ;
using NetMQ.Sockets;
using UnityEngine;
using UnityEngine.XR;
using UnityEngine.XR.Hands;

namespace Fitstream.Tracker
{
    [AddComponentMenu("Fitstream/Headset Publisher")]
    public sealed class FitstreamHeadsetPublisher : MonoBehaviour
    {
        [Tooltip("The tracker's ingest address (tracker serve --ingest).")]
        public string address = "tcp://127.0.0.1:5555";

        [Tooltip("This device's session id: 1-64 chars of [A-Za-z0-9._-].")]
        public string session = "unity";

        [Tooltip("Frames per second; 0 sends one per rendered frame.")]
        public float rate = 0f;

        /// <summary>Frames sent since enabled; seq of the last one.</summary>
        public long Sent { get; private set; }
        public long LastSeq { get { return seq != null ? seq.Last : 0; } }

        static readonly XRHandJointID[] TipJoints = {
            XRHandJointID.ThumbTip, XRHandJointID.IndexTip, XRHandJointID.MiddleTip,
            XRHandJointID.RingTip, XRHandJointID.LittleTip,
        };

        PublisherSocket socket;
        SeqClock seq;
        XRHandSubsystem hands;
        readonly List<XRHandSubsystem> subsystems = new List<XRHandSubsystem>();
        float nextSend;

        string PrefsKey { get { return "fitstream.seq." + session; } }

        void OnEnable()
        {
            if (!WireMap.IsValidSession(session))
            {
                Debug.LogError("Fitstream: session must be 1-64 chars of [A-Za-z0-9._-]", this);
                enabled = false;
                return;
            }
            long persisted;
            long.TryParse(PlayerPrefs.GetString(PrefsKey, "0"), out persisted);
            seq = new SeqClock(persisted);
            NetMQLifetime.Acquire();
            socket = new PublisherSocket();
            socket.Options.Linger = TimeSpan.Zero;
            socket.Options.SendHighWatermark = 8;  // a slow tracker never queues frames here
            socket.Connect(address);
            Sent = 0;
        }

        void OnDisable()
        {
            if (socket == null) return;
            PlayerPrefs.SetString(PrefsKey, seq.Last.ToString());
            PlayerPrefs.Save();
            socket.Dispose();
            socket = null;
            NetMQLifetime.Release();
        }

        void Update()
        {
            if (rate > 0f)
            {
                if (Time.unscaledTime < nextSend) return;
                nextSend = Mathf.Max(nextSend + 1f / rate, Time.unscaledTime - 1f / rate);
            }
            long t = MonotonicClock.NowNs();
            Vector3 headPosition;
            Quaternion headRotation;
            if (!TryHead(out headPosition, out headRotation)) return;  // no head, no frame
            XRHandSubsystem h = Hands();
            Dictionary<string, object> frame = HeadsetFrame.Build(
                session, seq.Next(t), t, UnityConversions.ToCore(headPosition),
                UnityConversions.ToCore(headRotation),
                h != null ? Sample(h.leftHand) : null, h != null ? Sample(h.rightHand) : null);
            byte[] payload = MessagePackSerializer.Serialize<object>(frame, ContractlessStandardResolver.Options);
            if (socket.TrySendFrame(payload)) Sent++;
        }

        static bool TryHead(out Vector3 position, out Quaternion rotation)
        {
            InputDevice hmd = InputDevices.GetDeviceAtXRNode(XRNode.Head);
            position = Vector3.zero;
            rotation = Quaternion.identity;
            if (!hmd.isValid) return false;
            if (hmd.TryGetFeatureValue(CommonUsages.centerEyePosition, out position)
                && hmd.TryGetFeatureValue(CommonUsages.centerEyeRotation, out rotation))
                return true;
            return hmd.TryGetFeatureValue(CommonUsages.devicePosition, out position)
                && hmd.TryGetFeatureValue(CommonUsages.deviceRotation, out rotation);
        }

        XRHandSubsystem Hands()
        {
            if (hands != null && hands.running) return hands;
            hands = null;
            SubsystemManager.GetSubsystems(subsystems);
            foreach (XRHandSubsystem s in subsystems)
                if (s.running) { hands = s; break; }
            return hands;
        }

        static HandSample Sample(XRHand hand)
        {
            Pose wrist;
            if (!hand.isTracked || !hand.GetJoint(XRHandJointID.Wrist).TryGetPose(out wrist)) return null;
            var sample = new HandSample {
                WristPosition = UnityConversions.ToCore(wrist.position),
                WristRotation = UnityConversions.ToCore(wrist.rotation),
            };
            var tips = new Vec3[5];
            for (int i = 0; i < 5; i++)
            {
                Pose tip;
                if (!hand.GetJoint(TipJoints[i]).TryGetPose(out tip)) return sample;  // no tips
                tips[i] = UnityConversions.ToCore(tip.position);
            }
            sample.Tips = tips;
            return sample;
        }
    }
}
