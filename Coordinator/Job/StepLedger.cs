using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// The workers' step reports, gathered until every member has reported a step: then that step is complete and counts
/// in the run's metrics. Keeps a running record of each worker's steps for the summary, bounded however long the job.
/// </summary>
sealed class StepLedger
{
    /// <summary>Step times kept per worker for its medians: a uniform sample of its steps (see <see cref="StrideSample{T}"/>).</summary>
    public const int TimingsKept = 256;

    readonly Dictionary<long, List<StepReport>> byStep = [];
    readonly Dictionary<string, WorkerRecord> byWorker = [];

    /// <summary>Records a report; once <paramref name="members"/> workers reported its step, returns that step's reports.</summary>
    public IReadOnlyList<StepReport>? Record(StepReport report, int members)
    {
        if (!byStep.TryGetValue(report.Step, out var reports)) byStep[report.Step] = reports = [];
        reports.Add(report);
        if (!byWorker.TryGetValue(report.WorkerId, out var mine)) byWorker[report.WorkerId] = mine = new WorkerRecord();
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

    /// <summary>Medians of each worker's steps (over a uniform sample of them), by worker name.</summary>
    public IReadOnlyList<WorkerTimings> WorkerTimings() =>
        byWorker.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w => w.Value.Timings(w.Key)).ToArray();

    /// <summary>One worker's steps: how many, a sample of their times, its newest step's traffic and its peak memory.</summary>
    sealed class WorkerRecord
    {
        readonly StrideSample<(double Compute, double AllReduce, double DataWait)> times = new(TimingsKept);
        long newestStep = long.MinValue, newestBytes, peakResident;

        public void Add(StepReport report)
        {
            times.Add((report.ComputeMs, report.AllReduceMs, report.DataWaitMs));
            if (report.Step >= newestStep) (newestStep, newestBytes) = (report.Step, report.AllReduceBytes);
            peakResident = Math.Max(peakResident, report.ResidentBytes);
        }

        public WorkerTimings Timings(string worker)
        {
            var sample = times.Items;
            return new(worker, times.Count, Statistics.Median(sample.Select(t => t.Compute + t.AllReduce + t.DataWait)),
                Statistics.Median(sample.Select(t => t.Compute)), Statistics.Median(sample.Select(t => t.AllReduce)),
                Statistics.Median(sample.Select(t => t.DataWait)), newestBytes, peakResident);
        }
    }
}
