using System.Numerics.Tensors;

namespace CondenseCluster.Shared.Training;

/// <summary>Values [Offset, Offset + Length) of the flat gradient buffer.</summary>
public readonly record struct GradientRun(long Offset, long Length);

/// <summary>
/// One parameter's place in the flat gradient buffer. A learned group convolution's weight [rows, in] also gives the
/// input columns each group keeps (row o belongs to group o mod G): its other entries' gradients are exactly zero,
/// since the forward multiplies the weight by the mask, and every worker holds the same mask.
/// </summary>
public sealed record ParameterLayout(long Length, int Rows = 1, bool[,]? KeptColumns = null);

/// <summary>
/// One all-reduce of a step: the flat range [<see cref="FlatStart"/>, <see cref="FlatEnd"/>), of which only the values
/// in <see cref="Runs"/> cross the ring, packed in order at [<see cref="CompactStart"/>, + <see cref="CompactLength"/>).
/// </summary>
public sealed record GradientBucket(long FlatStart, long FlatEnd, long CompactStart, long CompactLength, GradientRun[] Runs);

/// <summary>
/// Plans how a step's gradients cross the ring (DESIGN.md §2): in buckets taken from the end of the buffer, because
/// backward finishes the last layers' gradients first, each bucket cut where a chain step of the model ends so that it
/// can be sent as soon as backward has passed it; and, once layers are condensed, only the entries their masks keep.
/// Pure functions: every worker computes the same plan from the same masks.
/// </summary>
public static class GradientBuckets
{
    /// <summary>The runs of the flat buffer that must be summed: whole parameters, and the kept entries of masked weights.</summary>
    public static GradientRun[] KeptRuns(IReadOnlyList<ParameterLayout> parameters)
    {
        var runs = new List<GradientRun>();
        void Add(long offset, long length)
        {
            if (runs.Count > 0 && runs[^1].Offset + runs[^1].Length == offset) runs[^1] = runs[^1] with { Length = runs[^1].Length + length };
            else runs.Add(new(offset, length));
        }
        long start = 0;
        foreach (var parameter in parameters)
        {
            if (parameter.KeptColumns is not { } kept) Add(start, parameter.Length);
            else
            {
                int groups = kept.GetLength(0), inputs = kept.GetLength(1);
                if ((long)parameter.Rows * inputs != parameter.Length)
                    throw new ArgumentException($"a masked weight of {parameter.Length} values is not {parameter.Rows} rows of {inputs} inputs");
                for (int row = 0; row < parameter.Rows; row++)
                    for (int j = 0; j < inputs;)
                    {
                        if (!kept[row % groups, j]) { j++; continue; }
                        int from = j;
                        while (j < inputs && kept[row % groups, j]) j++;
                        Add(start + (long)row * inputs + from, j - from);
                    }
            }
            start += parameter.Length;
        }
        return runs.ToArray();
    }

    /// <summary>
    /// The buckets in the order they are sent, last gradients first. <paramref name="stepEnds"/> are the flat offsets
    /// where the model's chain steps end (ascending; the last is the buffer's length); a bucket closes at the first step
    /// boundary where it holds at least <paramref name="bucketFloats"/> kept values.
    /// </summary>
    public static GradientBucket[] Plan(IReadOnlyList<long> stepEnds, GradientRun[] kept, long bucketFloats)
    {
        if (bucketFloats < 1) throw new ArgumentOutOfRangeException(nameof(bucketFloats), "a bucket holds at least one value");
        if (stepEnds.Count == 0) throw new ArgumentException("the model has no chain steps");
        var boundaries = new[] { 0L }.Concat(stepEnds).ToArray();
        var keptBefore = KeptBefore(kept, boundaries);
        var buckets = new List<GradientBucket>();
        int end = boundaries.Length - 1;
        for (int b = end - 1; b >= 0; b--)
        {
            if (b > 0 && keptBefore[end] - keptBefore[b] < bucketFloats) continue; // grow the bucket over the previous step
            var runs = Clip(kept, boundaries[b], boundaries[end]).ToArray();
            buckets.Add(new(boundaries[b], boundaries[end], keptBefore[b], keptBefore[end] - keptBefore[b], runs));
            end = b;
        }
        return buckets.ToArray();
    }

    /// <summary>
    /// Copies the bucket's kept values into <paramref name="compact"/> (the whole packed buffer). <paramref name="flat"/>
    /// holds the flat buffer from offset <paramref name="first"/> on: all of it, or just the bucket's range.
    /// </summary>
    public static void Pack(ReadOnlySpan<float> flat, long first, GradientBucket bucket, Span<float> compact)
    {
        long to = bucket.CompactStart;
        foreach (var run in bucket.Runs)
        {
            flat.Slice((int)(run.Offset - first), (int)run.Length).CopyTo(compact[(int)to..]);
            to += run.Length;
        }
    }

    /// <summary>
    /// Writes the bucket's packed values back times <paramref name="scale"/>, in one pass over its range of
    /// <paramref name="flat"/> (which holds the flat buffer from offset <paramref name="first"/> on); the values that
    /// did not cross the ring become zero.
    /// </summary>
    public static void Unpack(ReadOnlySpan<float> compact, GradientBucket bucket, Span<float> flat, long first, float scale = 1)
    {
        long at = bucket.FlatStart, from = bucket.CompactStart;
        foreach (var run in bucket.Runs)
        {
            flat.Slice((int)(at - first), (int)(run.Offset - at)).Clear();
            var values = compact.Slice((int)from, (int)run.Length);
            var target = flat.Slice((int)(run.Offset - first), (int)run.Length);
            if (scale == 1) values.CopyTo(target);
            else TensorPrimitives.Multiply(values, scale, target);
            (at, from) = (run.Offset + run.Length, from + run.Length);
        }
        flat.Slice((int)(at - first), (int)(bucket.FlatEnd - at)).Clear();
    }

    /// <summary>How many kept values lie before each of the ascending <paramref name="offsets"/>, in one pass over the runs.</summary>
    static long[] KeptBefore(GradientRun[] runs, long[] offsets)
    {
        var counts = new long[offsets.Length];
        long before = 0;
        int r = 0;
        for (int i = 0; i < offsets.Length; i++)
        {
            for (; r < runs.Length && runs[r].Offset + runs[r].Length <= offsets[i]; r++) before += runs[r].Length;
            counts[i] = before + (r < runs.Length && runs[r].Offset < offsets[i] ? offsets[i] - runs[r].Offset : 0);
        }
        return counts;
    }

    static IEnumerable<GradientRun> Clip(GradientRun[] runs, long start, long end)
    {
        foreach (var run in runs)
        {
            long from = Math.Max(run.Offset, start), to = Math.Min(run.Offset + run.Length, end);
            if (from < to) yield return new(from, to - from);
        }
    }
}
