using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests.Training;

public class StrideSampleTests
{
    [Fact]
    public void ASampleKeepsEveryStrideThItemWithinItsCapacityHoweverManyAreAdded()
    {
        var sample = new StrideSample<long>(capacity: 8);
        for (long i = 0; i < 5; i++) sample.Add(i);
        Assert.Equal([0L, 1, 2, 3, 4], sample.Items);

        for (long i = 5; i < 1_000_000; i++) sample.Add(i);
        Assert.Equal(1_000_000, sample.Count);
        Assert.InRange(sample.Items.Count, 4, 7);
        long stride = sample.Items[1] - sample.Items[0];
        Assert.Equal(Enumerable.Range(0, sample.Items.Count).Select(i => i * stride), sample.Items);
        Assert.Equal(999_999, sample.ItemsWithNewest[^1]);
    }

    [Fact]
    public void TheMedianOfTheSampleFollowsTheWholeRun()
    {
        var sample = new StrideSample<double>(StepLedger.TimingsKept); // the step ledger's per-worker sample
        var random = new Random(7);
        var all = Enumerable.Range(0, 100_000).Select(_ => random.NextDouble() * 100).ToArray();
        foreach (double value in all) sample.Add(value);
        Assert.InRange(Statistics.Median(sample.Items), Statistics.Median(all) - 5, Statistics.Median(all) + 5);
    }

    [Fact]
    public void ASampleNeedsAnEvenCapacityAndStartsAfreshWhenCleared()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new StrideSample<int>(3));
        var sample = new StrideSample<int>(2);
        foreach (int i in new[] { 1, 2, 3 }) sample.Add(i);
        sample.Clear();
        sample.Add(9);
        Assert.Equal([9], sample.ItemsWithNewest);
        Assert.Equal(1, sample.Count);
    }
}
