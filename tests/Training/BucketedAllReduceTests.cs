using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Training;

public class BucketedAllReduceTests
{
    [Theory]
    [InlineData(10, 3)]     // 4 buckets of 3, 3, 2, 2
    [InlineData(10, 10)]    // one bucket
    [InlineData(10, 1000)]  // one bucket, larger than the buffer
    [InlineData(7, 1)]      // one value each
    public void EveryValueIsReducedOnceInEqualContiguousBuckets(int length, int bucketFloats)
    {
        using var flat = torch.arange(length, dtype: torch.float32);
        var host = new float[length];
        var lengths = new List<int>();
        BucketedAllReduce.Run(flat, host, bucketFloats, bucket =>
        {
            lengths.Add(bucket.Length);
            foreach (ref float value in bucket.Span) value *= 2; // what a ring of two identical replicas returns
            return Task.CompletedTask;
        });
        Assert.Equal(BucketedAllReduce.Count(length, bucketFloats), lengths.Count);
        Assert.Equal(length, lengths.Sum());
        Assert.True(lengths.Max() - lengths.Min() <= 1 && lengths.Max() <= bucketFloats);
        Assert.Equal(Enumerable.Range(0, length).Select(i => 2f * i), flat.data<float>().ToArray());
    }

    [Fact]
    public void AFailedBucketFailsTheWholeReduce()
    {
        using var flat = torch.ones(8);
        var error = Assert.Throws<InvalidOperationException>(() =>
            BucketedAllReduce.Run(flat, new float[8], 3, _ => Task.FromException(new InvalidOperationException("ring broken"))));
        Assert.Equal("ring broken", error.Message);
    }
}
