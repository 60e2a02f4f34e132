using CondenseCluster.Bench;
using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests.Bench;

/// <summary>The arithmetic behind the <c>memory</c> and <c>loader</c> suites' summaries (bench/Bench, compiled in here).</summary>
public class MemorySummaryTests
{
    const long MiB = 1 << 20;

    [Fact]
    public void GrowthIsMeasuredFromTheFirstSampleAtOrAfterWarmUp()
    {
        MemorySample[] samples =
        [
            new(50, 300 * MiB, 310 * MiB, 20 * MiB),
            new(100, 400 * MiB, 420 * MiB, 30 * MiB),  // warm-up ends here
            new(150, 405 * MiB, 420 * MiB, 31 * MiB),
            new(600, 410 * MiB, 430 * MiB, 34 * MiB),
        ];
        var summary = MemorySummary.Of(samples, warmupSteps: 100);

        Assert.Equal(100, summary.AfterWarmup.Step);
        Assert.Equal(600, summary.End.Step);
        Assert.Equal(430 * MiB, summary.PeakBytes);
        Assert.Equal(10 * MiB, summary.GrowthBytes);
        Assert.Equal(4 * MiB, summary.ManagedGrowthBytes);
        Assert.Equal(20.0 * MiB, summary.GrowthPer1000StepsBytes, precision: 6);  // 10 MiB over 500 steps
    }

    [Fact]
    public void WarmUpBetweenSamplesTakesTheNextSampleAndShrinkingIsNegativeGrowth()
    {
        MemorySample[] samples = [new(10, 500 * MiB, 500 * MiB, 0), new(20, 480 * MiB, 500 * MiB, 0), new(30, 470 * MiB, 500 * MiB, 0)];
        var summary = MemorySummary.Of(samples, warmupSteps: 15);

        Assert.Equal(20, summary.AfterWarmup.Step);
        Assert.Equal(-10 * MiB, summary.GrowthBytes);
        Assert.Equal(-1000.0 * MiB, summary.GrowthPer1000StepsBytes, precision: 6);
    }

    [Fact]
    public void NoSampleAfterWarmUpIsAnError()
    {
        Assert.Throws<ArgumentException>(() => MemorySummary.Of([new MemorySample(50, MiB, MiB, 0)], warmupSteps: 100));
        Assert.Throws<ArgumentException>(() => MemorySummary.Of([], warmupSteps: 0));
    }

    [Fact]
    public void MedianOfOddAndEvenCountsAndOfNone()
    {
        Assert.Equal(3, Statistics.Median([5, 1, 3]));
        Assert.Equal(2.5, Statistics.Median([4, 1, 3, 2]));
        Assert.Equal(0, Statistics.Median([]));
    }
}
