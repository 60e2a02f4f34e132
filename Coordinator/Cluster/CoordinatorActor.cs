using Akka.Actor;
using Akka.Cluster;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>A local worker process ended (its exit code); the job cannot count on it any more.</summary>
sealed record LocalWorkerExited(string WorkerId, int ExitCode);

/// <summary>The user interrupted the coordinator (Ctrl+C).</summary>
sealed record Interrupted;

/// <summary>
/// The coordinator's actor (role <c>coordinator</c>): routes worker messages to the <see cref="TrainingJob"/>, keeps
/// the worker addresses, watches them and their nodes, and runs the job's background work. The job's state lives in
/// the job.
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
                if (job.Knows(worker.WorkerId))
                {
                    Console.Error.WriteLine($"warning: a second worker named {worker.WorkerId} registered from {Sender.Path.Address}; ignored (names must be unique)");
                    return;
                }
                Context.Unwatch(known); // a worker of that name that the job lost, now restarted
            }
            workers[worker.WorkerId] = Sender;
            Context.Watch(Sender);
            job.WorkerRegistered(worker);
        });
        Receive<Terminated>(gone => Lost(gone.ActorRef.Path.Address, "left the cluster"));
        Receive<ClusterEvent.UnreachableMember>(e => Lost(e.Member.Address, "is unreachable (no heartbeat within the failure detector's pause)"));
        Receive<ClusterEvent.MemberRemoved>(e => Lost(e.Member.Address, "was removed from the cluster"));
        Receive<LocalWorkerExited>(exited => job.WorkerLost(exited.WorkerId, $"process exited with code {exited.ExitCode}"));
        Receive<Interrupted>(_ => job.Interrupt());
        ReceiveAny(job.Handle);
    }

    protected override void PreStart() =>
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberRemoved));

    protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);

    void Lost(Address node, string why)
    {
        foreach (var (id, _) in workers.Where(w => w.Value.Path.Address.Equals(node)).ToArray())
            job.WorkerLost(id, $"{why} (node {node})");
    }

    void IJobHost.Send(string workerId, object message)
    {
        if (workers.TryGetValue(workerId, out var worker)) worker.Tell(message, Self);
    }

    void IJobHost.Background(Func<Task<object>> work, Func<string, object> failed) =>
        Task.Run(work).PipeTo(Self, failure: e => failed(e.GetBaseException().Message));

    void IJobHost.Down(string workerId)
    {
        if (workers.TryGetValue(workerId, out var worker)) Akka.Cluster.Cluster.Get(Context.System).Down(worker.Path.Address);
    }

    void IJobHost.Ended(int exitCode) => exit.TrySetResult(exitCode);
}
