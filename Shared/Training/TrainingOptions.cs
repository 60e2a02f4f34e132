using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// The job configuration: everything that determines the training trajectory. It is stored in every checkpoint so a
/// resumed run continues the same job. Device, threads and output folder are run settings and live elsewhere.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Name shown in logs: a preset name or "custom".</summary>
    public string Arch { get; init; } = "condensenet-86";
    public required CondenseNetConfig Model { get; init; }
    public string Dataset { get; init; } = "fashion-mnist";
    public string? DataDir { get; init; }
    public int Epochs { get; init; } = 1;
    public int BatchSize { get; init; } = 64;
    public int MicroBatches { get; init; } = 1;
    public double LearningRate { get; init; } = 0.1;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 1e-4;
    /// <summary>Epochs of linear warmup per iteration from <see cref="WarmupLearningRate"/> before the cosine (0: none, the official recipe).</summary>
    public double WarmupEpochs { get; init; }
    public double WarmupLearningRate { get; init; }
    /// <summary>The linear scaling rule: the learning rate is multiplied by B/256.</summary>
    public bool ScaleLearningRate { get; init; }
    /// <summary>Label smoothing ε of the training loss (0: none, the official recipe).</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Decay of an exponential moving average of the weights, evaluated and exported beside them (0: none, the official recipe).</summary>
    public double EmaDecay { get; init; }
    /// <summary>Clip the step's gradient to this global L2 norm (0: no clipping, the official recipe).</summary>
    public double ClipGradientNorm { get; init; }
    /// <summary>Steps in a row whose gradient is not finite (skipped) before the run stops.</summary>
    public int MaxSkippedSteps { get; init; } = 10;
    /// <summary>Group-lasso coefficient λ (official: 0 on CIFAR, 1e-5 on ImageNet).</summary>
    public double Lasso { get; init; }
    public int Seed { get; init; }
    /// <summary>Write a checkpoint every N steps (0: only at the end of each epoch).</summary>
    public int CheckpointEverySteps { get; init; }
    /// <summary>
    /// Also write a checkpoint at the first step boundary once this many minutes of wall time have passed since the last
    /// one (0: none). Kept here, not with the run settings, so that a resumed job keeps it; it never changes the weights.
    /// </summary>
    public double CheckpointEveryMinutes { get; init; }
    /// <summary>Steps of fitting the pruned classifier on frozen features after conversion (0: the official conversion only).</summary>
    public int RecoverySteps { get; init; } = 300;
    /// <summary>Training samples whose features the classifier recovery fits on.</summary>
    public int RecoverySamples { get; init; } = 10_000;

    public void Validate()
    {
        Model.Validate();
        if (LearningRate <= 0) throw new ArgumentException($"--lr {LearningRate} must be positive");
        if (Lasso < 0) throw new ArgumentException($"--lasso {Lasso} must not be negative");
        if (WarmupEpochs < 0 || WarmupEpochs >= Epochs)
            throw new ArgumentException($"--warmup-epochs {WarmupEpochs} must be at least 0 and fewer than --epochs {Epochs}");
        if (WarmupLearningRate < 0) throw new ArgumentException($"--warmup-lr {WarmupLearningRate} must not be negative");
        if (LabelSmoothing is < 0 or >= 1) throw new ArgumentException($"--label-smoothing {LabelSmoothing} must be in [0, 1)");
        if (EmaDecay is < 0 or >= 1) throw new ArgumentException($"--ema {EmaDecay} must be in (0, 1), e.g. 0.9999 (0: no average)");
        if (ClipGradientNorm < 0) throw new ArgumentException($"--clip-grad-norm {ClipGradientNorm} must not be negative (0: no clipping)");
        if (MaxSkippedSteps < 0) throw new ArgumentException($"--max-skipped-steps {MaxSkippedSteps} must not be negative");
        if (CheckpointEverySteps < 0) throw new ArgumentException($"--checkpoint-every {CheckpointEverySteps} must not be negative");
        if (!(CheckpointEveryMinutes >= 0) || double.IsInfinity(CheckpointEveryMinutes))
            throw new ArgumentException($"--checkpoint-every-minutes {CheckpointEveryMinutes} must be a finite number of minutes, at least 0 (0: no timed checkpoints)");
        if (RecoverySteps < 0 || RecoverySamples < 1) throw new ArgumentException("--recovery-steps must be ≥ 0 and --recovery-samples ≥ 1");
    }
}
