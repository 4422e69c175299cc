// The SMPL+H -> Unity humanoid bone map (the same as tracker/vmc/mapping.py, checked
// against the golden vectors): 52 joints onto 52 HumanBodyBones, trees of the same shape.

using System;

namespace Fitstream.Tracker.Core
{
    public static class HumanoidMap
    {
        public const int JointCount = 52;
        public const int Hips = 0;
        public const int Head = 15;

        /// <summary>SMPL+H joint names in the wire's order (pose, joints, rest: joint j at
        /// 3j..3j+2); the hands in AMASS order: index, middle, pinky, ring, thumb.</summary>
        public static readonly string[] SmplJointNames = {
            "pelvis", "left_hip", "right_hip", "spine1",
            "left_knee", "right_knee", "spine2", "left_ankle",
            "right_ankle", "spine3", "left_foot", "right_foot",
            "neck", "left_collar", "right_collar", "head",
            "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
            "left_wrist", "right_wrist", "left_index1", "left_index2",
            "left_index3", "left_middle1", "left_middle2", "left_middle3",
            "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1",
            "left_ring2", "left_ring3", "left_thumb1", "left_thumb2",
            "left_thumb3", "right_index1", "right_index2", "right_index3",
            "right_middle1", "right_middle2", "right_middle3", "right_pinky1",
            "right_pinky2", "right_pinky3", "right_ring1", "right_ring2",
            "right_ring3", "right_thumb1", "right_thumb2", "right_thumb3",
        };

        /// <summary>Bones[j]: the UnityEngine.HumanBodyBones member that joint j drives.</summary>
        public static readonly string[] Bones = {
            "Hips", "LeftUpperLeg", "RightUpperLeg", "Spine",
            "LeftLowerLeg", "RightLowerLeg", "Chest", "LeftFoot",
            "RightFoot", "UpperChest", "LeftToes", "RightToes",
            "Neck", "LeftShoulder", "RightShoulder", "Head",
            "LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm",
            "LeftHand", "RightHand", "LeftIndexProximal", "LeftIndexIntermediate",
            "LeftIndexDistal", "LeftMiddleProximal", "LeftMiddleIntermediate", "LeftMiddleDistal",
            "LeftLittleProximal", "LeftLittleIntermediate", "LeftLittleDistal", "LeftRingProximal",
            "LeftRingIntermediate", "LeftRingDistal", "LeftThumbProximal", "LeftThumbIntermediate",
            "LeftThumbDistal", "RightIndexProximal", "RightIndexIntermediate", "RightIndexDistal",
            "RightMiddleProximal", "RightMiddleIntermediate", "RightMiddleDistal", "RightLittleProximal",
            "RightLittleIntermediate", "RightLittleDistal", "RightRingProximal", "RightRingIntermediate",
            "RightRingDistal", "RightThumbProximal", "RightThumbIntermediate", "RightThumbDistal",
        };

        /// <summary>Parent joint (and bone) of each joint; -1 for the pelvis (Hips).</summary>
        public static readonly int[] Parents = {
            -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14,
            16, 17, 18, 19, 20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34,
            35, 21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50,
        };

        /// <summary>(proximal, intermediate, distal) joints of the left and right thumb.</summary>
        public static readonly int[][] Thumbs = {
            new[] { 34, 35, 36 },
            new[] { 49, 50, 51 },
        };

        /// <summary>The joint index of a HumanBodyBones name, or -1.</summary>
        public static int IndexOfBone(string bone) { return Array.IndexOf(Bones, bone); }
    }
}
