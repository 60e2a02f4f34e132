namespace CondenseCluster.Coordinator.Job;

/// <summary>What the job needs from around it; the coordinator actor provides it.</summary>
public interface IJobHost
{
    void Send(string workerId, object message);

    /// <summary>
    /// Runs <paramref name="work"/> off the actor; its result comes back to <see cref="TrainingJob.Handle"/>, or if it
    /// throws, what <paramref name="failed"/> makes of the error.
    /// </summary>
    void Background(Func<Task<object>> work, Func<string, object> failed);

    /// <summary>Removes a worker's node from the cluster (it is gone or hung), so that membership can move on.</summary>
    void Down(string workerId);

    /// <summary>The job is over for <paramref name="reason"/>; workers have been told.</summary>
    void Ended(JobEnd end, string reason);
}

/// <summary>
/// How a job ends: it completed; it stopped gracefully with a checkpoint of the step it stopped at; it was aborted at
/// once (its newest checkpoint, possibly older, is where it resumes); it failed.
/// </summary>
public enum JobEnd { Completed, Stopped, Aborted, Failed }
