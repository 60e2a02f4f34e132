namespace CondenseCluster.Shared.Training;

/// <summary>
/// The learning rate of every step: the official cosine annealing per iteration, lr = ½·lr0·(1 + cos(π·t/T)), and for
/// large batches the linear scaling rule (lr0·B/256) and a linear warmup per iteration before the cosine (Goyal et al.
/// 2017). Without warmup and scaling it is exactly the official schedule.
/// </summary>
public static class LearningRate
{
    public static double Cosine(double initial, long step, long totalSteps) =>
        0.5 * initial * (1 + Math.Cos(Math.PI * step / totalSteps));

    /// <summary>The rate the schedule peaks at: --lr, times B/256 with --scale-lr.</summary>
    public static double Peak(TrainingOptions options) =>
        options.ScaleLearningRate ? options.LearningRate * options.BatchSize / 256 : options.LearningRate;

    /// <summary>The event that says what the linear scaling rule made of --lr, when it is on.</summary>
    public static LearningRateScaled? Scaled(TrainingOptions options) =>
        options.ScaleLearningRate ? new LearningRateScaled(options.LearningRate, options.BatchSize, Peak(options)) : null;

    /// <summary>
    /// The rate of global step <paramref name="step"/>: from --warmup-lr up to the peak in a straight line over the
    /// warmup's steps, then the cosine from the peak over the steps left.
    /// </summary>
    public static double At(TrainingOptions options, MicroBatchPlan plan, long step)
    {
        long warmup = WarmupSteps(options, plan);
        double peak = Peak(options);
        return step < warmup
            ? options.WarmupLearningRate + (peak - options.WarmupLearningRate) * step / warmup
            : Cosine(peak, step - warmup, plan.TotalSteps - warmup);
    }

    /// <summary>The steps of --warmup-epochs E: E·steps per epoch, rounded to whole steps.</summary>
    public static long WarmupSteps(TrainingOptions options, MicroBatchPlan plan) => (long)Math.Round(options.WarmupEpochs * plan.StepsPerEpoch);
}
