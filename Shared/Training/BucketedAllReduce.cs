using CondenseCluster.Shared.Comm;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Sums a flat float32 tensor (all gradients, on any device) across the ring through a host buffer, in buckets:
/// while bucket k crosses the ring, bucket k+1 is copied out of the tensor and bucket k−1 copied back in, so device
/// copies overlap network transfer. Buckets are equal contiguous ranges (<see cref="RingPlan.Chunk"/>), the same on
/// every worker, as each bucket is one all-reduce.
/// </summary>
public static class BucketedAllReduce
{
    /// <summary>How many buckets of at most <paramref name="bucketFloats"/> a buffer of <paramref name="length"/> needs.</summary>
    public static int Count(long length, long bucketFloats) =>
        bucketFloats < 1 ? throw new ArgumentOutOfRangeException(nameof(bucketFloats), "a bucket holds at least one value")
            : (int)Math.Max(1, (length + bucketFloats - 1) / bucketFloats);

    /// <summary>
    /// Replaces <paramref name="flat"/> by its sum over the ring; <paramref name="host"/> is its host staging buffer and
    /// <paramref name="allReduce"/> sums one bucket of it (in place) across the ring. Values of <paramref name="host"/>
    /// beyond the tensor's length (control flags the caller set) are summed with the last bucket.
    /// </summary>
    public static void Run(Tensor flat, float[] host, long bucketFloats, Func<Memory<float>, Task> allReduce)
    {
        long length = flat.numel();
        int buckets = Count(length, bucketFloats);
        var ranges = Enumerable.Range(0, buckets).Select(b => RingPlan.Chunk(length, buckets, b)).ToArray();
        Tensor View(int b) => flat.narrow(0, ranges[b].Start, ranges[b].Length);

        using (var first = View(0)) HostBuffer.Gather([first], host.AsSpan(ranges[0].Start, ranges[0].Length));
        for (int b = 0; b < buckets; b++)
        {
            var reducing = allReduce(b + 1 < buckets ? host.AsMemory(ranges[b].Start, ranges[b].Length) : host.AsMemory(ranges[b].Start));
            if (b + 1 < buckets)
                using (var next = View(b + 1)) HostBuffer.Gather([next], host.AsSpan(ranges[b + 1].Start, ranges[b + 1].Length));
            if (b > 0)
                using (var previous = View(b - 1)) HostBuffer.Scatter(host.AsSpan(ranges[b - 1].Start, ranges[b - 1].Length), [previous]);
            reducing.GetAwaiter().GetResult();
        }
        using var last = View(buckets - 1);
        HostBuffer.Scatter(host.AsSpan(ranges[^1].Start, ranges[^1].Length), [last]);
    }
}
