using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Sums a step's gradients across the ring while backward is still running, as PyTorch DDP does with its buckets:
/// each bucket (<see cref="GradientBuckets.Plan"/>) is copied to the host, packed to its kept values and sent as soon
/// as backward has finished it, while backward goes on with the layers before it. The buckets cross the ring one after
/// the other in plan order, the same on every worker. <see cref="Finish"/> waits for the last and writes the sums back.
/// </summary>
public sealed class GradientSync
{
    readonly Tensor flat;
    readonly GradientBucket[] buckets;
    readonly float[] full;     // the flat buffer on the host
    readonly float[] compact;  // one control value summed with the bucket sent last (the buffer's first), then the kept values
    readonly Func<Memory<float>, Task> allReduce;
    int started;
    Task sending = Task.CompletedTask;

    /// <param name="flat">the gradient buffer (<see cref="GradientBuffer.Flat"/>), on any device</param>
    /// <param name="allReduce">sums one packed bucket in place across the ring</param>
    public GradientSync(Tensor flat, GradientBucket[] buckets, Func<Memory<float>, Task> allReduce)
    {
        (this.flat, this.buckets, this.allReduce) = (flat, buckets, allReduce);
        full = new float[flat.numel()];
        compact = new float[buckets.Sum(b => b.CompactLength) + 1];
    }

    /// <summary>Values that cross the ring per step, the control value included.</summary>
    public long PackedLength => compact.Length;

    /// <summary>Starts a step; the previous one must have finished.</summary>
    public void BeginStep() => (started, sending) = (0, Task.CompletedTask);

    /// <summary>Called as backward goes: the gradients from <paramref name="flatOffset"/> to the end are final.</summary>
    public void FinalFrom(long flatOffset)
    {
        // The first bucket of the buffer waits for Finish: it carries the control value.
        while (started < buckets.Length - 1 && buckets[started].FlatStart >= flatOffset) Start(buckets[started++], withControl: false);
    }

    /// <summary>
    /// Sends what is left, waits for every bucket and writes the sums into the gradient buffer; returns the sum of
    /// <paramref name="control"/> over the ring (a flag every worker must agree on).
    /// </summary>
    public float Finish(float control)
    {
        compact[0] = control;
        while (started < buckets.Length) Start(buckets[started], withControl: ++started == buckets.Length);
        sending.GetAwaiter().GetResult();
        foreach (var bucket in buckets) GradientBuckets.Unpack(compact.AsSpan(1), bucket, full);
        HostBuffer.Scatter(full, [flat]);
        return compact[0];
    }

    void Start(GradientBucket bucket, bool withControl)
    {
        using (var range = flat.narrow(0, bucket.FlatStart, bucket.FlatEnd - bucket.FlatStart))
            HostBuffer.Gather([range], full.AsSpan((int)bucket.FlatStart, (int)(bucket.FlatEnd - bucket.FlatStart)));
        GradientBuckets.Pack(full, bucket, compact.AsSpan(1));
        // The bucket sent last starts the buffer (CompactStart 0), so with the control value before it, it is one range.
        var values = withControl ? compact.AsMemory(0, (int)bucket.CompactLength + 1) : compact.AsMemory((int)bucket.CompactStart + 1, (int)bucket.CompactLength);
        if (values.Length > 0) sending = After(sending, values);
    }

    async Task After(Task previous, Memory<float> values)
    {
        await previous;
        await allReduce(values);
    }
}
