using System.Diagnostics;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// The step and epoch metrics of a run, the same on one node and on the coordinator: a step's sums (over its
/// micro-batches, and over workers in a cluster) become its <see cref="StepMetrics"/> and add to the epoch; an epoch's
/// evaluation closes the epoch. A uniform sample of the step times (at most 4,096, so a job of any length keeps the
/// same memory) gives the run's medians.
/// </summary>
public sealed class RunMetrics(TrainingOptions options, MicroBatchPlan plan)
{
    readonly StrideSample<double> times = new(4096);
    readonly Stopwatch epochClock = new();
    double epochLoss, epochCorrect, epochSamples;

    /// <summary>The whole-step times, in milliseconds and in order, of every step recorded so far up to 4,096 of them, then of a uniform sample.</summary>
    public IReadOnlyList<double> StepMs => times.Items;

    /// <summary>How many steps were recorded.</summary>
    public long Steps => times.Count;

    /// <summary>Starts the first epoch's clock (a cluster job starts it once its workers are there).</summary>
    public void Start() => epochClock.Start();

    /// <summary>
    /// Global step <paramref name="step"/> completed with summed loss, correct predictions and samples, with the masks at
    /// <paramref name="stage"/>; times in milliseconds (in a cluster, the slowest worker's); <paramref name="updateSkipped"/>
    /// when its gradient was not finite.
    /// </summary>
    public StepMetrics Step(long step, int stage, double lossSum, double correct, double samples, double stepMs, double computeMs, double dataWaitMs,
        bool updateSkipped = false)
    {
        times.Add(stepMs);
        (epochLoss, epochCorrect, epochSamples) = (epochLoss + lossSum, epochCorrect + correct, epochSamples + samples);
        return new StepMetrics(step, plan.EpochOf(step), lossSum / samples, correct / samples,
            LearningRate.At(options, plan, step), stage, options.Model.CondenseFactor - 1,
            samples / (stepMs / 1000), stepMs, computeMs, dataWaitMs, updateSkipped);
    }

    /// <summary>
    /// The epoch that ends at step boundary <paramref name="at"/> was evaluated: its metrics over the steps recorded
    /// since the last epoch (none when a run resumed at the boundary), and the next epoch starts.
    /// </summary>
    public EpochMetrics Epoch(long at, Accuracy test)
    {
        var epoch = new EpochMetrics(plan.EpochOf(at - 1), epochLoss / Math.Max(1, epochSamples), epochCorrect / Math.Max(1, epochSamples), test,
            epochClock.Elapsed.TotalSeconds);
        (epochLoss, epochCorrect, epochSamples) = (0, 0, 0);
        epochClock.Restart();
        return epoch;
    }
}
