using Akka.Actor;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>A local worker process ended (its exit code); the job cannot count on it any more.</summary>
sealed record LocalWorkerExited(string WorkerId, int ExitCode);

/// <summary>The user interrupted the coordinator (Ctrl+C).</summary>
sealed record Interrupted;

/// <summary>
/// The coordinator's actor (role <c>coordinator</c>): routes worker messages to the <see cref="TrainingJob"/>, keeps
/// the worker addresses, watches them, and runs the job's background work. The job's state lives in the job.
/// </summary>
sealed class CoordinatorActor : ReceiveActor, IJobHost
{
    readonly Dictionary<string, IActorRef> workers = [];
    readonly TaskCompletionSource<int> exit;
    readonly TrainingJob job;

    public CoordinatorActor(Func<IJobHost, TrainingJob> createJob, TaskCompletionSource<int> exit)
    {
        this.exit = exit;
        job = createJob(this);
        Receive<RegisterWorker>(worker =>
        {
            if (workers.TryGetValue(worker.WorkerId, out var known) && !known.Equals(Sender))
            {
                Console.Error.WriteLine($"warning: a second worker named {worker.WorkerId} registered from {Sender.Path.Address}; ignored (names must be unique)");
                return;
            }
            workers[worker.WorkerId] = Sender;
            Context.Watch(Sender);
            job.WorkerRegistered(worker);
        });
        Receive<Terminated>(gone =>
        {
            foreach (var (id, _) in workers.Where(w => w.Value.Equals(gone.ActorRef)).ToArray())
                job.WorkerLost(id, $"left the cluster (node {gone.ActorRef.Path.Address} is down or unreachable)");
        });
        Receive<LocalWorkerExited>(exited => job.WorkerLost(exited.WorkerId, $"process exited with code {exited.ExitCode}"));
        Receive<Interrupted>(_ => job.Interrupt());
        ReceiveAny(job.Handle);
    }

    void IJobHost.Send(string workerId, object message)
    {
        if (workers.TryGetValue(workerId, out var worker)) worker.Tell(message, Self);
    }

    void IJobHost.Background(string what, Func<Task<object>> work) =>
        Task.Run(work).PipeTo(Self, failure: e => new BackgroundFailed(what, e.GetBaseException().Message));

    void IJobHost.Ended(int exitCode) => exit.TrySetResult(exitCode);
}
