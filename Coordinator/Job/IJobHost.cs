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

    /// <summary>The job is over (0: completed, 1: failed, 130: stopped) for <paramref name="reason"/>; workers have been told.</summary>
    void Ended(int exitCode, string reason);
}
