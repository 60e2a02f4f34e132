namespace CondenseCluster.Shared.Cluster;

// The control-plane protocol between the coordinator and its workers (DESIGN.md §2). Messages are small and
// immutable; tensors never travel here: gradients and importance sums go over the gRPC ring, whole replica states
// over the workers' state service.

/// <summary>A worker that joined the cluster offers itself to the coordinator; it repeats this until accepted.</summary>
public sealed record RegisterWorker(string WorkerId, string DataEndpoint, string Device, int Threads);

/// <summary>The coordinator knows the worker; it will be sent <see cref="JoinJob"/> when a job needs it.</summary>
public sealed record WorkerAccepted(string WorkerId);

/// <summary>
/// Makes a registered worker rank <paramref name="Rank"/> of the job's ring. The worker builds its replica from the
/// options (same seed, same initial weights everywhere) unless the coordinator then loads a state into it, and answers
/// <see cref="ReplicaReady"/>. Gradients cross the ring in buckets of <paramref name="BucketFloats"/> values.
/// </summary>
public sealed record JoinJob(string OptionsJson, int Rank, IReadOnlyList<string> Endpoints, long RingGeneration, int ChecksumEvery, long BucketFloats);

/// <summary>The replica is built (or loaded) and its ring is configured.</summary>
public sealed record ReplicaReady(string WorkerId, long Step, string WeightChecksum);

/// <summary>Run global steps [From, To) without the coordinator, reporting each one; To is the next boundary.</summary>
public sealed record RunSteps(long From, long To);

/// <summary>
/// What one worker did in one step: its share of the loss and accuracy, and where its time went (milliseconds).
/// Every <see cref="JoinJob.ChecksumEvery"/> steps it carries the weight checksum.
/// </summary>
public sealed record StepReport(
    string WorkerId, long Step, double LossSum, int Correct, int Samples,
    double ComputeMs, double AllReduceMs, double DataWaitMs, string? WeightChecksum);

/// <summary>The worker finished <see cref="RunSteps"/> up to <paramref name="Step"/> (exclusive).</summary>
public sealed record StepsDone(string WorkerId, long Step, string WeightChecksum);

/// <summary>Workers average their per-layer importance over the ring; rank 0 sends it, one message per layer.</summary>
public sealed record ComputeImportance(long MaskVersion);

/// <summary>Averaged importance [G, in] of learned layer <paramref name="Layer"/> (row-major float32 bytes).</summary>
public sealed record LayerImportance(long MaskVersion, int Layer, byte[] Values)
{
    public static LayerImportance Of(long maskVersion, int layer, float[,] importance)
    {
        var bytes = new byte[Buffer.ByteLength(importance)];
        Buffer.BlockCopy(importance, 0, bytes, 0, bytes.Length);
        return new(maskVersion, layer, bytes);
    }

    /// <summary>The matrix back, checked against the layer's shape.</summary>
    public float[,] Matrix(int groups, int inputs)
    {
        if (Values.Length != groups * inputs * sizeof(float))
            throw new ArgumentException($"importance of layer {Layer} has {Values.Length / sizeof(float)} values, [{groups}, {inputs}] expected");
        var matrix = new float[groups, inputs];
        Buffer.BlockCopy(Values, 0, matrix, 0, Values.Length);
        return matrix;
    }
}

/// <summary>The coordinator's decided masks: per learned layer its stage and bit-packed kept columns [G, in].</summary>
public sealed record ApplyMasks(long MaskVersion, long Step, IReadOnlyList<int> Stages, IReadOnlyList<byte[]> KeptColumns);

/// <summary>The worker installed a mask version; the checksums let the coordinator verify every replica agrees.</summary>
public sealed record MasksApplied(string WorkerId, long MaskVersion, string MaskChecksum, string WeightChecksum);

/// <summary>Average BatchNorm statistics over the ring (once per step), then evaluate this worker's test shard.</summary>
public sealed record EvaluateShard(long Step);

/// <summary>Accuracy (fractions) and mean loss on a worker's test shard of <paramref name="Samples"/> images.</summary>
public sealed record ShardEvaluated(string WorkerId, long Step, double Top1, double Top5, double Loss, int Samples);

/// <summary>Average BatchNorm statistics over the ring (once per step) so the state the coordinator fetches is the job's.</summary>
public sealed record PrepareState(long Step);

/// <summary>The worker's state can be fetched from its state service.</summary>
public sealed record StatePrepared(string WorkerId, long Step, string WeightChecksum);

/// <summary>A worker could not carry out a command; the job stops with this error.</summary>
public sealed record WorkerFailed(string WorkerId, string Error);

/// <summary>The job is over: workers leave the cluster and exit.</summary>
public sealed record JobEnded(string Reason);
