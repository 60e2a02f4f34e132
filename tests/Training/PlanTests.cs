using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests.Training;

public class PlanTests
{
    [Fact]
    public void CosineLearningRateFollowsTheOfficialFormula()
    {
        Assert.Equal(0.1, LearningRate.Cosine(0.1, 0, 100), 12);
        Assert.Equal(0.05, LearningRate.Cosine(0.1, 50, 100), 12);
        Assert.Equal(0.5 * 0.1 * (1 + Math.Cos(Math.PI * 0.25)), LearningRate.Cosine(0.1, 25, 100), 12);
        Assert.Equal(0, LearningRate.Cosine(0.1, 100, 100), 12);
    }

    [Fact]
    public void WithoutWarmupAndScalingTheScheduleIsTheOfficialCosineToTheBit()
    {
        var options = LocalTrainingTests.Tiny();
        var plan = new MicroBatchPlan(64, 1, 6000, 1);
        for (long step = 0; step < plan.TotalSteps; step++)
            Assert.Equal(LearningRate.Cosine(0.1, step, plan.TotalSteps), LearningRate.At(options, plan, step));
        Assert.Null(LearningRate.Scaled(options));
    }

    [Fact]
    public void WarmupRisesLinearlyToTheScaledPeakAndTheCosineTakesTheStepsLeft()
    {
        // B = 2,048: the linear scaling rule makes 0.1 a peak of 0.8; 2 of 10 epochs of 50 steps warm up from 0.
        var options = LocalTrainingTests.Tiny() with { BatchSize = 2048, Epochs = 10, WarmupEpochs = 2, ScaleLearningRate = true };
        var plan = new MicroBatchPlan(2048, 1, 2048 * 50, 10);
        Assert.Equal(100, LearningRate.WarmupSteps(options, plan));
        Assert.Equal(0.8, LearningRate.Peak(options), 12);
        Assert.Equal(0, LearningRate.At(options, plan, 0));
        Assert.Equal(0.4, LearningRate.At(options, plan, 50), 12);
        Assert.Equal(0.8, LearningRate.At(options, plan, 100), 12);
        Assert.Equal(LearningRate.Cosine(0.8, 200, 400), LearningRate.At(options, plan, 300), 12);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(16)]
    public void AnEpochSeesAPermutationWhateverTheMicroBatchSplit(int microBatches)
    {
        var plan = new MicroBatchPlan(BatchSize: 16, MicroBatches: microBatches, TrainCount: 100, Epochs: 2);
        plan.Validate();
        var order = SampleOrder.Permutation(100, seed: 3, epoch: 1);
        var seen = new List<int>();
        for (long step = plan.StepsPerEpoch; step < 2 * plan.StepsPerEpoch; step++)
            for (int m = 0; m < microBatches; m++)
                seen.AddRange(plan.Indices(order, step, m));
        Assert.Equal(6 * 16, seen.Count);
        Assert.Equal(seen.Count, seen.Distinct().Count());
        // The same positions of the permutation, in the same order, for every split.
        Assert.Equal(order[..96], seen);
    }

    [Fact]
    public void UnequalMicroBatchesDifferByOneSampleAndTheirWeightsAverageOverTheWholeBatch()
    {
        var plan = new MicroBatchPlan(BatchSize: 64, MicroBatches: 3, TrainCount: 1000, Epochs: 1);
        plan.Validate();
        Assert.Equal([22, 21, 21], Enumerable.Range(0, 3).Select(plan.SizeOf));
        Assert.Equal([0, 22, 43], Enumerable.Range(0, 3).Select(plan.StartOf));
        // Weighted by b_m·M/B and divided by M, each micro-batch's mean loss counts by its share b_m/B of the 64 samples.
        Assert.Equal([22 / 64.0, 21 / 64.0, 21 / 64.0], Enumerable.Range(0, 3).Select(m => plan.LossWeight(m) / 3));
        Assert.Equal(22 * 3 / 64.0, plan.LossWeight(0), 15);
        // Equal micro-batches are weighted by exactly 1: they compute what they did before unequal ones existed.
        var equal = new MicroBatchPlan(BatchSize: 48, MicroBatches: 3, TrainCount: 1000, Epochs: 1);
        Assert.All(Enumerable.Range(0, 3), m => Assert.Equal(1.0, equal.LossWeight(m)));
    }

    [Fact]
    public void PermutationsDependOnSeedAndEpochOnly()
    {
        var a = SampleOrder.Permutation(50, 1, 0);
        Assert.Equal(a, SampleOrder.Permutation(50, 1, 0));
        Assert.NotEqual(a, SampleOrder.Permutation(50, 1, 1));
        Assert.NotEqual(a, SampleOrder.Permutation(50, 2, 0));
        Assert.Equal(Enumerable.Range(0, 50), a.Order());
    }

    [Fact]
    public void MicroBatchMGoesToLiveWorkerMModN()
    {
        var plan = new MicroBatchPlan(64, 8, 1000, 1);
        Assert.Equal([0, 3, 6], plan.MicroBatchesOf(0, 3));
        Assert.Equal([1, 4, 7], plan.MicroBatchesOf(1, 3));
        Assert.Equal([2, 5], plan.MicroBatchesOf(2, 3));
        Assert.Equal(Enumerable.Range(0, 8), plan.MicroBatchesOf(0, 1));
    }

    [Theory]
    [InlineData(1.0, 0.0, 0.0, "--warmup-epochs 1 must be at least 0 and fewer than --epochs 1")]
    [InlineData(0.0, -0.1, 0.0, "--warmup-lr -0.1 must not be negative")]
    [InlineData(0.0, 0.0, 1.0, "--label-smoothing 1 must be in [0, 1)")]
    public void ImpossibleRecipesAreExplained(double warmupEpochs, double warmupLr, double labelSmoothing, string message)
    {
        var options = LocalTrainingTests.Tiny() with { WarmupEpochs = warmupEpochs, WarmupLearningRate = warmupLr, LabelSmoothing = labelSmoothing };
        Assert.Equal(message, Assert.Throws<ArgumentException>(options.Validate).Message);
    }

    [Theory]
    [InlineData(2, 3, 1000, "--batch-size 2 is smaller than --micro-batches 3")]
    [InlineData(64, 0, 1000, "--micro-batches 0")]
    [InlineData(64, 4, 10, "fewer than one batch")]
    public void ImpossiblePlansAreExplained(int batch, int micro, int count, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => new MicroBatchPlan(batch, micro, count, 1).Validate());
        Assert.Contains(message, error.Message);
    }
}
