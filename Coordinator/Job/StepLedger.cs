using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// The workers' step reports, gathered until every member has reported a step: then that step is complete and counts
/// in the run's metrics. Keeps each worker's reports for the medians of the summary.
/// </summary>
sealed class StepLedger
{
    readonly Dictionary<long, List<StepReport>> byStep = [];
    readonly Dictionary<string, List<StepReport>> byWorker = [];

    /// <summary>Records a report; once <paramref name="members"/> workers reported its step, returns that step's reports.</summary>
    public IReadOnlyList<StepReport>? Record(StepReport report, int members)
    {
        if (!byStep.TryGetValue(report.Step, out var reports)) byStep[report.Step] = reports = [];
        reports.Add(report);
        if (!byWorker.TryGetValue(report.WorkerId, out var mine)) byWorker[report.WorkerId] = mine = [];
        mine.Add(report);
        if (reports.Count < members) return null;
        byStep.Remove(report.Step);
        return reports;
    }

    /// <summary>
    /// A recovery continues from <paramref name="furthest"/>: steps before it that some survivor completed count with the
    /// reports there are (returned in order); reports of steps to be redone are dropped.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<StepReport>> Settle(long furthest)
    {
        var settled = byStep.Where(r => r.Key < furthest).OrderBy(r => r.Key).Select(r => (IReadOnlyList<StepReport>)r.Value).ToArray();
        byStep.Clear();
        return settled;
    }

    /// <summary>Medians of each worker's steps, by worker name.</summary>
    public IReadOnlyList<WorkerTimings> WorkerTimings() =>
        byWorker.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w =>
        {
            var reports = w.Value;
            return new WorkerTimings(w.Key, reports.Count, Statistics.Median(reports.Select(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs)),
                Statistics.Median(reports.Select(r => r.ComputeMs)), Statistics.Median(reports.Select(r => r.AllReduceMs)),
                Statistics.Median(reports.Select(r => r.DataWaitMs)), reports.MaxBy(r => r.Step)!.AllReduceBytes, reports.Max(r => r.ResidentBytes));
        }).ToArray();
}
