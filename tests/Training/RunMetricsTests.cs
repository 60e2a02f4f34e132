using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests.Training;

public class RunMetricsTests
{
    // 10 steps per epoch, 2 epochs.
    static readonly MicroBatchPlan Plan = new(64, 2, 640, 2);
    static readonly TrainingOptions Options = LocalTrainingTests.Tiny() with { LearningRate = 0.1 };

    [Fact]
    public void AStepsSumsBecomeItsMetrics()
    {
        var metrics = new RunMetrics(Options, Plan);
        var step = metrics.Step(12, stage: 1, lossSum: 128, correct: 16, samples: 64, stepMs: 500, computeMs: 400, dataWaitMs: 100);
        Assert.Equal(new StepMetrics(12, Epoch: 1, Loss: 2, Accuracy: 0.25, LearningRate.Cosine(0.1, 12, 20), Stage: 1,
            FinalStage: Options.Model.CondenseFactor - 1, ImagesPerSecond: 128, StepMs: 500, ComputeMs: 400, DataWaitMs: 100), step);
        Assert.Equal([500.0], metrics.StepMs);
    }

    [Fact]
    public void AnEpochAveragesItsOwnStepsOverSamplesAndStartsTheNext()
    {
        var metrics = new RunMetrics(Options, Plan);
        metrics.Start();
        metrics.Step(8, 0, lossSum: 100, correct: 10, samples: 64, 100, 90, 10);
        metrics.Step(9, 0, lossSum: 60, correct: 22, samples: 16, 300, 290, 10);
        var test = new Accuracy(0.5, 0.9, 1.2, 100);
        var first = metrics.Epoch(10, test);
        Assert.Equal((0, 2.0, 0.4, test), (first.Epoch, first.TrainLoss, first.TrainAccuracy, first.Test));
        Assert.True(first.Seconds > 0);

        metrics.Step(10, 1, lossSum: 32, correct: 48, samples: 64, 200, 190, 10);
        var second = metrics.Epoch(20, test);
        Assert.Equal((1, 0.5, 0.75), (second.Epoch, second.TrainLoss, second.TrainAccuracy));
        Assert.Equal([100.0, 300, 200], metrics.StepMs);
        Assert.Equal(200, Statistics.Median(metrics.StepMs));
    }

    [Fact]
    public void ALongRunKeepsABoundedSampleOfStepTimesWhoseMedianIsTheRunsMedian()
    {
        var metrics = new RunMetrics(Options, Plan);
        var random = new Random(4);
        var all = Enumerable.Range(0, 100_000).Select(_ => 50 + 100 * random.NextDouble()).ToArray(); // uniform in [50, 150) ms
        for (int i = 0; i < all.Length; i++) metrics.Step(i, 0, lossSum: 1, correct: 1, samples: 64, all[i], 1, 0);
        Assert.Equal(100_000, metrics.Steps);
        Assert.InRange(metrics.StepMs.Count, 2048, 4096);
        Assert.InRange(Statistics.Median(metrics.StepMs), Statistics.Median(all) - 2, Statistics.Median(all) + 2);
    }

    [Fact]
    public void AnEpochWithoutStepsHasNoLoss()
    {
        // A run resumed at an epoch's last step evaluates without having trained in that epoch.
        var epoch = new RunMetrics(Options, Plan).Epoch(10, new Accuracy(0.5, 0.9, 1.2, 100));
        Assert.Equal((0, 0.0, 0.0), (epoch.Epoch, epoch.TrainLoss, epoch.TrainAccuracy));
    }
}
