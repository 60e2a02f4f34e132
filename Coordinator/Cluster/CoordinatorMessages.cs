using CondenseCluster.Coordinator.Job;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>Start a job (the actor builds it on its own thread); refused while another one runs.</summary>
sealed record StartJob(Func<IJobHost, TrainingJob> Create, TaskCompletionSource Accepted, TaskCompletionSource<JobOutcome> Ended);

/// <summary>How a job ended, and why.</summary>
public sealed record JobOutcome(JobEnd End, string Reason)
{
    /// <summary>The process's exit code: 0 completed or stopped with a checkpoint, 130 aborted, 1 failed.</summary>
    public int ExitCode => End switch { JobEnd.Completed or JobEnd.Stopped => 0, JobEnd.Aborted => 130, _ => 1 };
}

/// <summary>
/// Stop the job (a signal, the control API, the dashboard): gracefully, with a checkpoint at the next step boundary,
/// or <paramref name="Now"/>, at once (the newest checkpoint stays the place to resume from).
/// </summary>
sealed record StopJob(string By, bool Now);

/// <summary>Write a checkpoint at the next step boundary; answered once it is on disk.</summary>
sealed record CheckpointNow(TaskCompletionSource<(string Path, long Step)> Reply);

/// <summary>A local worker process ended (its exit code); the job cannot count on it any more.</summary>
sealed record LocalWorkerExited(string WorkerId, int ExitCode);
