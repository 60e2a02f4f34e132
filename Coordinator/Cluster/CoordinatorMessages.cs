using CondenseCluster.Coordinator.Job;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>Start a job (the actor builds it on its own thread); refused while another one runs.</summary>
sealed record StartJob(Func<IJobHost, TrainingJob> Create, TaskCompletionSource Accepted, TaskCompletionSource<JobOutcome> Ended);

/// <summary>How a job ended: 0 completed, 1 failed, 130 stopped; and why.</summary>
public sealed record JobOutcome(int ExitCode, string Reason);

/// <summary>Stop the job: the user pressed Ctrl+C, or a control API call asked for it.</summary>
sealed record StopJob(string By);

/// <summary>Write a checkpoint at the next step boundary; answered once it is on disk.</summary>
sealed record CheckpointNow(TaskCompletionSource<(string Path, long Step)> Reply);

/// <summary>A local worker process ended (its exit code); the job cannot count on it any more.</summary>
sealed record LocalWorkerExited(string WorkerId, int ExitCode);
