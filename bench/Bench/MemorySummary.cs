namespace CondenseCluster.Bench;

/// <summary>
/// The process's memory after <see cref="Step"/> training steps: resident now and at most so far, and the part of it the
/// .NET garbage collector has committed (the rest is native: libtorch, the allocator's heap, the runtime).
/// </summary>
public readonly record struct MemorySample(int Step, long ResidentBytes, long PeakResidentBytes, long ManagedCommittedBytes);

/// <summary>
/// What a long run did to a worker's memory: resident memory once warmed up (allocator caches and libtorch's buffers
/// filled), the peak, and at the end. Growth after warm-up is what a leak shows as.
/// </summary>
public sealed record MemorySummary(MemorySample AfterWarmup, MemorySample End, long PeakBytes)
{
    public long GrowthBytes => End.ResidentBytes - AfterWarmup.ResidentBytes;

    /// <summary>How much of <see cref="GrowthBytes"/> the garbage collector's committed memory accounts for.</summary>
    public long ManagedGrowthBytes => End.ManagedCommittedBytes - AfterWarmup.ManagedCommittedBytes;

    public double GrowthPer1000StepsBytes =>
        End.Step == AfterWarmup.Step ? 0 : GrowthBytes * 1000.0 / (End.Step - AfterWarmup.Step);

    /// <summary>
    /// The summary of samples in step order: after warm-up is the first sample at or past <paramref name="warmupSteps"/>,
    /// the end the last sample, the peak the largest high-water mark (VmHWM, warm-up included).
    /// </summary>
    public static MemorySummary Of(IReadOnlyList<MemorySample> samples, int warmupSteps)
    {
        if (!samples.Any(s => s.Step >= warmupSteps))
            throw new ArgumentException($"no memory sample at or after the {warmupSteps} warm-up steps");
        var afterWarmup = samples.First(s => s.Step >= warmupSteps);
        return new MemorySummary(afterWarmup, samples[^1], samples.Max(s => s.PeakResidentBytes));
    }
}
