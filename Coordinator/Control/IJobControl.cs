using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Coordinator.Control;

/// <summary>
/// What the control API and the dashboard may do to jobs. Refusals: <see cref="InvalidOperationException"/> when the
/// state does not allow it (a job runs, none runs), <see cref="JobRequestException"/> for a request that cannot run.
/// </summary>
public interface IJobControl
{
    /// <summary>Starts a job; the task it returns ends with the job.</summary>
    Task<Task<JobOutcome>> StartAsync(JobRequest request);
    /// <summary>Stops the job: with a checkpoint at the next step boundary, or <paramref name="now"/>; the task ends with the job.</summary>
    Task<JobOutcome> StopAsync(string by, bool now);
    Task<(string Path, long Step)> CheckpointAsync();
    Task<(string Path, long Step, CostRow Cost)> ExportAsync(string? path);
}

/// <summary>A request that cannot be served, and which of its fields is at fault (configuration, workers, resume, path).</summary>
public sealed class JobRequestException(string field, string message) : ArgumentException(message)
{
    public string Field { get; } = field;
}
