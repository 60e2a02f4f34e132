using TorchSharp;

namespace CondenseCluster.Shared.Training;

/// <summary>How to run a job on this machine; unlike <see cref="TrainingOptions"/>, none of it changes the result.</summary>
public sealed record RunSettings
{
    public required torch.Device Device { get; init; }
    public required string OutputFolder { get; init; }
    public int LoaderThreads { get; init; } = 1;
    public int EvalBatchSize { get; init; } = 64;
    /// <summary>A checkpoint file, or a folder whose newest valid checkpoint is taken.</summary>
    public string? ResumeFrom { get; init; }
    /// <summary>Stop (with a checkpoint) once this global step is done; the schedule still spans the whole job.</summary>
    public long? StopAfterStep { get; init; }
    /// <summary>A training-form model whose weights and masks a new run starts from (<see cref="InitialWeights"/>); a resumed run ignores it.</summary>
    public string? InitFrom { get; init; }
    /// <summary>The run's identity across coordinator restarts (<c>RunIdentity</c>): workers' memory of another run is never taken for this one's.</summary>
    public string RunId { get; init; } = "";
    public string Allocator { get; init; } = "not configured";
}
