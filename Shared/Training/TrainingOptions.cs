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
    /// <summary>Group-lasso coefficient λ (official: 0 on CIFAR, 1e-5 on ImageNet).</summary>
    public double Lasso { get; init; }
    public int Seed { get; init; }
    /// <summary>Write a checkpoint every N steps (0: only at the end of each epoch).</summary>
    public int CheckpointEverySteps { get; init; }
    /// <summary>Steps of fitting the pruned classifier on frozen features after conversion (0: the official conversion only).</summary>
    public int RecoverySteps { get; init; } = 300;
    /// <summary>Training samples whose features the classifier recovery fits on.</summary>
    public int RecoverySamples { get; init; } = 10_000;

    public void Validate()
    {
        Model.Validate();
        if (LearningRate <= 0) throw new ArgumentException($"--lr {LearningRate} must be positive");
        if (Lasso < 0) throw new ArgumentException($"--lasso {Lasso} must not be negative");
        if (CheckpointEverySteps < 0) throw new ArgumentException($"--checkpoint-every {CheckpointEverySteps} must not be negative");
        if (RecoverySteps < 0 || RecoverySamples < 1) throw new ArgumentException("--recovery-steps must be ≥ 0 and --recovery-samples ≥ 1");
    }
}
