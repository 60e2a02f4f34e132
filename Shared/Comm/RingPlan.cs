namespace CondenseCluster.Shared.Comm;

/// <summary>The two halves of a ring all-reduce.</summary>
public enum RingPhase : byte { ReduceScatter, AllGather }

/// <summary>What one frame of a ring all-reduce carries: elements [Offset, Offset + Length) of chunk Chunk.</summary>
public readonly record struct RingSlice(RingPhase Phase, int Step, int Chunk, int Offset, int Length)
{
    public override string ToString() => $"{Phase} step {Step} chunk {Chunk} at {Offset} with {Length} values";
}

/// <summary>
/// The chunked ring all-reduce as pure functions (DESIGN.md §2). N ranks, rank r sends to r+1 and receives from r−1
/// (mod N); the buffer is cut into N contiguous chunks. Reduce-scatter: at step s rank r sends chunk r−s and adds the
/// received chunk r−s−1, so after N−1 steps rank r holds the full sum of chunk r+1. All-gather: at step s rank r sends
/// chunk r+1−s and copies the received chunk r−s. Every chunk is summed once, in ring order, then only copied, so all
/// ranks end bit-identical.
/// </summary>
public static class RingPlan
{
    /// <summary>Chunk <paramref name="index"/> of <paramref name="parts"/>: sizes differ by at most one, the first ones larger.</summary>
    public static (int Start, int Length) Chunk(long length, int parts, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Array.MaxLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        if (index < 0 || index >= parts) throw new ArgumentOutOfRangeException(nameof(index), $"chunk {index} of {parts}");
        long baseLength = length / parts, longer = length % parts;
        long start = index * baseLength + Math.Min(index, longer);
        return ((int)start, (int)(baseLength + (index < longer ? 1 : 0)));
    }

    public static int SendChunk(RingPhase phase, int rank, int step, int size) =>
        Mod(phase == RingPhase.ReduceScatter ? rank - step : rank + 1 - step, size);

    public static int ReceiveChunk(RingPhase phase, int rank, int step, int size) =>
        Mod(phase == RingPhase.ReduceScatter ? rank - step - 1 : rank - step, size);

    /// <summary>The N−1 reduce-scatter steps, then the N−1 all-gather steps; or the steps of phase <paramref name="only"/>.</summary>
    public static IEnumerable<(RingPhase Phase, int Step)> Steps(int size, RingPhase? only = null)
    {
        foreach (var phase in new[] { RingPhase.ReduceScatter, RingPhase.AllGather })
            if (only is null || only == phase)
                for (int step = 0; step < size - 1; step++)
                    yield return (phase, step);
    }

    /// <summary>
    /// Cuts [start, start + length) into pieces of at most <paramref name="maxLength"/>. An empty range still gives one
    /// empty slice, so that every step carries a frame and the all-reduce stays a barrier that sees a dead peer.
    /// </summary>
    public static IEnumerable<(int Offset, int Length)> Slices(int start, int length, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        int offset = start, end = start + length;
        do
        {
            int n = Math.Min(maxLength, end - offset);
            yield return (offset, n);
            offset += n;
        } while (offset < end);
    }

    /// <summary>
    /// Every slice rank <paramref name="rank"/> sends, in order (of phase <paramref name="only"/> alone: a reduce-scatter
    /// leaves rank r the sum of chunk r+1, from which an all-gather alone starts).
    /// </summary>
    public static IEnumerable<RingSlice> Sends(int rank, int size, long length, int maxSliceLength, RingPhase? only = null) =>
        Schedule(SendChunk, rank, size, length, maxSliceLength, only);

    /// <summary>Every slice rank <paramref name="rank"/> receives, in order (of phase <paramref name="only"/> alone).</summary>
    public static IEnumerable<RingSlice> Receives(int rank, int size, long length, int maxSliceLength, RingPhase? only = null) =>
        Schedule(ReceiveChunk, rank, size, length, maxSliceLength, only);

    static IEnumerable<RingSlice> Schedule(Func<RingPhase, int, int, int, int> chunkOf, int rank, int size, long length, int maxSliceLength, RingPhase? only)
    {
        foreach (var (phase, step) in Steps(size, only))
        {
            int chunk = chunkOf(phase, rank, step, size);
            var (start, chunkLength) = Chunk(length, size, chunk);
            foreach (var (offset, n) in Slices(start, chunkLength, maxSliceLength))
                yield return new RingSlice(phase, step, chunk, offset, n);
        }
    }

    static int Mod(int value, int size) => ((value % size) + size) % size;
}
