using CondenseCluster.Shared.Training;

namespace CondenseCluster.Bench.CoordinatorLoad;

/// <summary>The summary table: one row per number of workers, then the dashboard's and stream's sizes.</summary>
static class LoadReport
{
    public static void PrintTable(IReadOnlyList<LoadResult> results, LoadSettings settings)
    {
        Console.WriteLine();
        Console.WriteLine($"{LoadSettings.Arch}: {settings.Steps} steps at {settings.Rate} per second per worker, weight checksums every " +
                          $"{settings.ChecksumEvery} steps, {results.FirstOrDefault()?.ImportanceRounds.Length ?? 0} condensing rounds; coordinator process only");
        Console.WriteLine("| N | steps/s | CPU ms / step | CPU µs / worker-step | resident MB start → end | heap MB start → end | " +
                          "last report → step complete ms (median / p99) | importance round ms | mask broadcast → all acknowledged ms |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
            Console.WriteLine($"| {r.Workers} | {r.Steps / r.Seconds:F1} | {r.CpuSeconds * 1000 / r.Steps:F1} | {r.CpuSeconds * 1e6 / r.Steps / r.Workers:F1} | " +
                              $"{r.ResidentStart >> 20} → {r.ResidentEnd >> 20} | {r.HeapStart / 1e6:F1} → {r.HeapEnd / 1e6:F1} | " +
                              $"{Median(r.StepLatencies):F1} / {Percentile(r.StepLatencies, 0.99):F1} | {Median(r.ImportanceRounds):F0} | {Median(r.Broadcasts):F0} |" +
                              (r.Failure is null ? "" : $" failed after {r.Steps} steps: {r.Failure}"));
        Console.WriteLine();
        Console.WriteLine();
        Console.WriteLine($"one worker fails before step {settings.FailureStep}: the job leaves it out and the others train on");
        Console.WriteLine("| N | failure → recovery started ms | failure → training continues ms |");
        Console.WriteLine("|---|---|---|");
        foreach (var r in results)
            Console.WriteLine(r.Recovery is var (started, continued) ? $"| {r.Workers} | {started:F0} | {continued:F0} |" : $"| {r.Workers} | no recovery | |");
        Console.WriteLine();
        Console.WriteLine("| N | snapshot bytes (first → last poll, at step) | stream bytes / step (first half → second half) | page behind the coordinator ms (median / max) |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var r in results)
        {
            var (early, late) = Halves(r.Stream);
            // From the first poll after training began: before it, the page shows no workers yet.
            var polls = r.Snapshots.Where(s => s.Step > 0).ToArray();
            string snapshots = polls.Length == 0 ? "none"
                : $"{polls[0].Bytes:N0} (step {polls[0].Step}) → {polls[^1].Bytes:N0} (step {polls[^1].Step})";
            var lags = r.Stream.Select(s => s.LagMs).ToArray();
            Console.WriteLine($"| {r.Workers} | {snapshots} | {early:N0} → {late:N0} | " +
                              (lags.Length == 0 ? "no step arrived |" : $"{Median(lags):F0} / {lags.Max():F0} |"));
        }
    }

    /// <summary>Stream bytes per step over the first and the second half of the steps the page saw.</summary>
    static (double Early, double Late) Halves((long Step, double LagMs, long Bytes)[] stream)
    {
        if (stream.Length < 3) return (0, 0);
        var (first, middle, last) = (stream[0], stream[stream.Length / 2], stream[^1]);
        return (PerStep(first, middle), PerStep(middle, last));

        static double PerStep((long Step, double, long Bytes) from, (long Step, double, long Bytes) to) =>
            (double)(to.Bytes - from.Bytes) / Math.Max(1, to.Step - from.Step);
    }

    static double Median(double[] values) => values.Length == 0 ? double.NaN : Statistics.Median(values);

    static double Percentile(double[] values, double q)
    {
        if (values.Length == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}
