using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Training;

public class GradientBucketsTests
{
    // A plain parameter of 3, a 4 x 4 weight with G = 2 (rows 0, 2 keep columns 0-1; rows 1, 3 keep column 2), a plain 2.
    static readonly ParameterLayout[] Layout =
    [
        new(3), new(16, Rows: 4, KeptColumns: new[,] { { true, true, false, false }, { false, false, true, false } }), new(2),
    ];

    [Fact]
    public void KeptRunsCoverWholeParametersAndEachRowsKeptColumnsMergingNeighbours()
    {
        Assert.Equal(new GradientRun[] { new(0, 5), new(9, 1), new(11, 2), new(17, 1), new(19, 2) }, GradientBuckets.KeptRuns(Layout));
        Assert.Equal(new GradientRun[] { new(0, 21) }, GradientBuckets.KeptRuns([new(3), new(16), new(2)]));
        Assert.Throws<ArgumentException>(() => GradientBuckets.KeptRuns([new(15, Rows: 4, KeptColumns: new bool[1, 4])]));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(100)]
    public void BucketsRunFromTheEndCutAtStepEndsAndCoverEveryKeptValueOnce(long bucketFloats)
    {
        var kept = GradientBuckets.KeptRuns(Layout);
        long[] stepEnds = [3, 11, 19, 21];
        var buckets = GradientBuckets.Plan(stepEnds, kept, bucketFloats);

        Assert.Equal(21, buckets[0].FlatEnd);
        Assert.Equal(0, buckets[^1].FlatStart);
        foreach (var (later, earlier) in buckets.Zip(buckets.Skip(1)))
        {
            Assert.Equal(later.FlatStart, earlier.FlatEnd); // contiguous, last gradients first
            Assert.Equal(earlier.CompactStart + earlier.CompactLength, later.CompactStart);
            Assert.Contains(later.FlatStart, stepEnds);
            Assert.True(later.CompactLength >= bucketFloats); // only the buffer's first bucket may be short
        }
        Assert.Equal(kept.Sum(r => r.Length), buckets.Sum(b => b.CompactLength));
        Assert.All(buckets, b => Assert.Equal(b.CompactLength, b.Runs.Sum(r => r.Length)));
        Assert.All(buckets, b => Assert.All(b.Runs, r => Assert.True(r.Offset >= b.FlatStart && r.Offset + r.Length <= b.FlatEnd)));
        if (bucketFloats == 1) Assert.Equal(4, buckets.Length); // every step its own bucket
        if (bucketFloats == 100) Assert.Single(buckets);
    }

    [Fact]
    public void PackSendsOnlyKeptValuesAndUnpackZeroesTheRest()
    {
        var buckets = GradientBuckets.Plan([3, 11, 19, 21], GradientBuckets.KeptRuns(Layout), 4);
        var flat = Enumerable.Range(1, 21).Select(i => (float)i).ToArray();
        var compact = new float[buckets.Sum(b => b.CompactLength)];
        foreach (var bucket in buckets) GradientBuckets.Pack(flat, 0, bucket, compact);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 10, 12, 13, 18, 20, 21 }, compact);

        var back = Enumerable.Repeat(-1f, 21).ToArray();
        foreach (var bucket in buckets) GradientBuckets.Unpack(compact, bucket, back, 0);
        var expected = flat.Select((v, i) => new[] { 0, 1, 2, 3, 4, 9, 11, 12, 17, 19, 20 }.Contains(i) ? v : 0f).ToArray();
        Assert.Equal(expected, back);
    }

    [Fact]
    public void PackAndUnpackTakeABucketsRangeAloneAndUnpackScalesInTheSamePass()
    {
        // As on a GPU: only the bucket's range is on the host, one copy each way.
        var buckets = GradientBuckets.Plan([3, 11, 19, 21], GradientBuckets.KeptRuns(Layout), 4);
        var flat = Enumerable.Range(1, 21).Select(i => (float)i).ToArray();
        var compact = new float[buckets.Sum(b => b.CompactLength)];
        foreach (var bucket in buckets)
            GradientBuckets.Pack(flat.AsSpan((int)bucket.FlatStart, (int)(bucket.FlatEnd - bucket.FlatStart)), bucket.FlatStart, bucket, compact);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 10, 12, 13, 18, 20, 21 }, compact);

        var back = Enumerable.Repeat(-1f, 21).ToArray();
        foreach (var bucket in buckets)
            GradientBuckets.Unpack(compact, bucket, back.AsSpan((int)bucket.FlatStart, (int)(bucket.FlatEnd - bucket.FlatStart)), bucket.FlatStart, 1f / 3);
        var expected = flat.Select((v, i) => new[] { 0, 1, 2, 3, 4, 9, 11, 12, 17, 19, 20 }.Contains(i) ? v * (1f / 3) : 0f).ToArray();
        Assert.Equal(expected, back);
    }
}

public class GradientSyncTests
{
    static readonly ParameterLayout[] Layout = [new(3), new(16, Rows: 4, KeptColumns: new[,] { { true, true, false, false }, { false, false, true, false } }), new(2)];

    [Fact]
    public void BucketsLeaveAsBackwardFinishesThemAndTheSumsComeBackWithZerosWhereMasked()
    {
        var buckets = GradientBuckets.Plan([3, 11, 19, 21], GradientBuckets.KeptRuns(Layout), 2);
        using var flat = torch.arange(1, 22, dtype: torch.float32);
        var sent = new List<float[]>();
        var sync = new GradientSync(flat, buckets, 0.5f, values =>
        {
            sent.Add(values.ToArray());
            foreach (ref float v in values.Span) v *= 2; // what a ring of two identical replicas returns
            return Task.CompletedTask;
        });
        Assert.Equal(12, sync.PackedLength); // 11 kept values and the stop votes

        sync.BeginStep();
        sync.FinalFrom(19);
        Assert.Single(sent); // the last step's bucket is on its way while backward goes on
        Assert.Equal(new float[] { 20, 21 }, sent[0]);
        sync.FinalFrom(11);
        sync.FinalFrom(3);
        Assert.Equal(3, sent.Count);
        sync.FinalFrom(0); // the buffer's first bucket waits for the stop votes
        Assert.Equal(3, sent.Count);

        Assert.True(sync.Finish(stopAfterThisStep: true));
        Assert.Equal(4, sent.Count);
        Assert.Equal(new float[] { 1, 1, 2, 3 }, sent[^1]); // the stop votes first, then the first step's values
        var expected = Enumerable.Range(0, 21).Select(i => new[] { 0, 1, 2, 3, 4, 9, 11, 12, 17, 19, 20 }.Contains(i) ? (i + 1f) : 0f); // twice the value, times the scale 1/2
        Assert.Equal(expected, flat.data<float>().ToArray());
    }

    [Fact]
    public void AFailedBucketFailsTheStep()
    {
        var buckets = GradientBuckets.Plan([3, 11, 19, 21], GradientBuckets.KeptRuns(Layout), 2);
        using var flat = torch.ones(21);
        var sync = new GradientSync(flat, buckets, 1, _ => Task.FromException(new InvalidOperationException("ring broken")));
        sync.BeginStep();
        sync.FinalFrom(11);
        var error = Assert.Throws<InvalidOperationException>(() => sync.Finish(stopAfterThisStep: false));
        Assert.Equal("ring broken", error.Message);
    }
}
