using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Cluster;

// The control-plane protocol between the coordinator and its workers (DESIGN.md §2). Messages are small and
// immutable; tensors never travel here: gradients and importance sums go over the data plane's ring, whole replica states
// over the workers' state service.

/// <summary>What a worker sends about the job's work: the coordinator takes it only from workers that are part of the job.</summary>
public interface IWorkerReply
{
    string WorkerId { get; }
}

/// <summary>
/// A worker that joined the cluster offers itself to the coordinator; it repeats this until accepted. A worker that
/// outlived a coordinator says which job its replica holds (<see cref="HeldReplica"/>), so a restarted coordinator
/// can continue from the workers' memory instead of the last checkpoint, and which ring generation it was last in, so
/// the coordinator's next one is newer.
/// </summary>
public sealed record RegisterWorker(string WorkerId, string DataEndpoint, string Device, int Threads, HeldReplica? Held = null, long RingGeneration = -1);

/// <summary>A replica of the job <paramref name="JobKey"/> (<see cref="KeyOf"/>), standing at <paramref name="Step"/>.</summary>
public sealed record HeldReplica(string JobKey, long Step)
{
    /// <summary>
    /// A job's identity: a hash of its run's identity and of its configuration as the coordinator sends it in
    /// <see cref="JoinJob.OptionsJson"/>. Two runs of one configuration are two jobs: neither continues the other's replicas.
    /// </summary>
    public static string KeyOf(string runId, string optionsJson) =>
        ShortDigest.Of(hash => hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{runId}\n{optionsJson}")));
}

/// <summary>The coordinator knows the worker; it will be sent <see cref="JoinJob"/> when a job needs it.</summary>
public sealed record WorkerAccepted(string WorkerId);

/// <summary>The coordinator will not take this worker (<paramref name="Reason"/> says why and what to change); the worker exits.</summary>
public sealed record WorkerRefused(string WorkerId, string Reason);

/// <summary>
/// Makes a registered worker rank <paramref name="Rank"/> of the job's ring of generation <paramref name="RingGeneration"/>;
/// sent at the start and again whenever membership changes. The worker builds its replica from the options (same seed,
/// same initial weights everywhere) or keeps the one it has of job <paramref name="JobKey"/>; a replica not at <see cref="StateSource.Step"/> of
/// <paramref name="From"/> first copies the whole state from that peer. It answers <see cref="ReplicaReady"/>.
/// The ring has <paramref name="Members"/> ranks; <paramref name="Layout"/> gives this one its places in them (one ring,
/// or hierarchically as the topology and the workers' hosts allow), not every member's endpoint, so a ring formed for
/// N workers costs N messages of a fixed size. Gradients cross the ring in buckets of <paramref name="BucketFloats"/>
/// values, as <paramref name="GradientPrecision"/>; only the entries the masks keep unless <paramref name="SendMaskedGradients"/>.
/// </summary>
public sealed record JoinJob(string OptionsJson, string JobKey, int Rank, int Members, RingLayout Layout, long RingGeneration, int ChecksumEvery, long BucketFloats,
    bool SendMaskedGradients, WirePrecision GradientPrecision, StateSource? From = null);

/// <summary>A peer's replica-state service (its data endpoint) holding the job's state at <paramref name="Step"/>.</summary>
public sealed record StateSource(string Endpoint, long Step);

/// <summary>The replica is built (or loaded) and its ring is configured.</summary>
public sealed record ReplicaReady(string WorkerId, long Step, string WeightChecksum) : IWorkerReply;

/// <summary>Run global steps [From, To) without the coordinator, reporting each one; To is the next boundary.</summary>
public sealed record RunSteps(long From, long To);

/// <summary>
/// What one worker did in one step: its share of the loss and accuracy, and where its time went (milliseconds).
/// Every <see cref="JoinJob.ChecksumEvery"/> steps it carries the weight checksum. <paramref name="ResidentBytes"/>: the
/// worker process's resident memory after the step (libtorch's native memory included).
/// </summary>
public sealed record StepReport(
    string WorkerId, long Step, double LossSum, int Correct, int Samples,
    double ComputeMs, double AllReduceMs, double DataWaitMs, string? WeightChecksum, long AllReduceBytes = 0, bool UpdateSkipped = false,
    long ResidentBytes = 0) : IWorkerReply;

/// <summary>
/// End the running segment early, so that a joining worker can be admitted: every replica of ring generation
/// <paramref name="RingGeneration"/> stops after the same step, agreed through the ring (a flag summed with the gradients).
/// </summary>
public sealed record Yield(long RingGeneration);

/// <summary>
/// Stop whatever runs on ring generation <paramref name="RingGeneration"/> (a peer is gone): an all-reduce in flight is
/// cut, its step discarded. The worker answers <see cref="StepsAborted"/> once its replica is idle.
/// </summary>
public sealed record AbortSteps(long RingGeneration);

/// <summary>The replica is idle and stands at <paramref name="Step"/> (steps before it are complete and applied).</summary>
public sealed record StepsAborted(string WorkerId, long Step) : IWorkerReply;

/// <summary>The worker finished <see cref="RunSteps"/> up to <paramref name="Step"/> (exclusive).</summary>
public sealed record StepsDone(string WorkerId, long Step, string WeightChecksum) : IWorkerReply;

/// <summary>Workers average their per-layer importance over the ring; rank 0 sends it, one message per layer.</summary>
public sealed record ComputeImportance(long MaskVersion);

/// <summary>Averaged importance [G, in] of learned layer <paramref name="Layer"/> (row-major float32 bytes, <see cref="MaskWire"/>).</summary>
public sealed record LayerImportance(long MaskVersion, int Layer, byte[] Values);

/// <summary>The coordinator's decided masks: per learned layer its stage and kept columns [G, in] (bits, <see cref="MaskWire"/>).</summary>
public sealed record ApplyMasks(long MaskVersion, long Step, IReadOnlyList<int> Stages, IReadOnlyList<byte[]> KeptColumns);

/// <summary>The worker installed a mask version; the checksums let the coordinator verify every replica agrees.</summary>
public sealed record MasksApplied(string WorkerId, long MaskVersion, string MaskChecksum, string WeightChecksum) : IWorkerReply;

/// <summary>Average BatchNorm statistics over the ring (once per step), then evaluate this worker's test shard.</summary>
public sealed record EvaluateShard(long Step);

/// <summary>Accuracy (fractions) and mean loss on a worker's test shard of <paramref name="Samples"/> images.</summary>
public sealed record ShardEvaluated(string WorkerId, long Step, double Top1, double Top5, double Loss, int Samples) : IWorkerReply;

/// <summary>Average BatchNorm statistics over the ring (once per step) so the state the coordinator fetches is the job's.</summary>
public sealed record PrepareState(long Step);

/// <summary>The worker's state can be fetched from its state service.</summary>
public sealed record StatePrepared(string WorkerId, long Step, string WeightChecksum) : IWorkerReply;

/// <summary>
/// A worker could not carry out a command. <paramref name="DataPlane"/>: its ring failed (a peer may be gone; the job
/// recovers with the live workers); otherwise the worker itself cannot go on (e.g. its copy of the data is corrupt)
/// and is excluded from the job. <paramref name="Failure"/>: why the all-reduce failed, when one did.
/// </summary>
public sealed record WorkerFailed(string WorkerId, string Error, bool DataPlane = false, AllReduceFailure? Failure = null) : IWorkerReply;

/// <summary>
/// The worker's connection to its right ring neighbour of generation <paramref name="RingGeneration"/> ended unasked,
/// possibly while no all-reduce ran (a mask broadcast, an evaluation): the neighbour's process or host may be gone, and
/// the job recovers now rather than at its next all-reduce or on the failure detector's verdict. A report about a ring
/// the job has since replaced is stale.
/// </summary>
public sealed record RingBroken(string WorkerId, long RingGeneration, string Error) : IWorkerReply;

/// <summary>
/// The worker was asked to terminate (<paramref name="Signal"/>, e.g. its pod is preempted) and asks for a graceful stop
/// of the job: a checkpoint at the next step boundary, then the end (<c>condense-worker --on-sigterm checkpoint</c>).
/// </summary>
public sealed record WorkerTerminating(string WorkerId, string Signal) : IWorkerReply;

/// <summary>
/// The worker leaves at once (<paramref name="Signal"/> with <c>--on-sigterm leave</c>, or a second signal): the job goes
/// on without it. Told before its ring closes, so a recovery that the closing starts does not count on it.
/// </summary>
public sealed record WorkerLeaving(string WorkerId, string Signal) : IWorkerReply;

/// <summary>The job is over: the worker leaves the cluster and exits.</summary>
public sealed record JobEnded(string Reason);

/// <summary>The job goes on without this worker (it failed, diverged or broke the protocol): it leaves and exits with an error.</summary>
public sealed record Excluded(string Reason);
