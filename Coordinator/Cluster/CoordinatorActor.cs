using Akka.Actor;
using Akka.Cluster;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>
/// The coordinator's actor (role <c>coordinator</c>): runs one <see cref="TrainingJob"/> at a time, routes worker
/// messages to it, keeps the worker addresses, watches them and their nodes, and runs the job's background work.
/// Workers that register while no job runs wait for the next one. The job's state lives in the job.
/// </summary>
sealed class CoordinatorActor : ReceiveActor, IJobHost
{
    readonly Dictionary<string, IActorRef> workers = [];
    readonly Dictionary<string, RegisterWorker> waiting = [];
    TrainingJob? job;
    TaskCompletionSource<JobOutcome>? ended;

    public CoordinatorActor()
    {
        Receive<StartJob>(Start);
        Receive<RegisterWorker>(worker =>
        {
            if (workers.TryGetValue(worker.WorkerId, out var known) && !known.Equals(Sender))
            {
                if (job?.Knows(worker.WorkerId) == true)
                {
                    // Refused rather than ignored, so it does not wait (or retry) for ever: e.g. a worker left over from another job.
                    string reason = $"a worker named {worker.WorkerId} is part of the running job already (at {known.Path.Address}); names must be unique: " +
                                    "start this one with another --name, or stop the other";
                    Console.Error.WriteLine($"warning: refused a second worker named {worker.WorkerId} from {Sender.Path.Address}");
                    Sender.Tell(new WorkerRefused(worker.WorkerId, reason));
                    return;
                }
                Context.Unwatch(known); // a worker of that name that the job lost, now restarted
            }
            workers[worker.WorkerId] = Sender;
            Context.Watch(Sender);
            if (job is null)
            {
                waiting[worker.WorkerId] = worker;
                Sender.Tell(new WorkerAccepted(worker.WorkerId));
            }
            else job.WorkerRegistered(worker);
        });
        Receive<Terminated>(gone => Lost(gone.ActorRef.Path.Address, "left the cluster"));
        Receive<ClusterEvent.UnreachableMember>(e => Lost(e.Member.Address, "is unreachable (no heartbeat within the failure detector's pause)"));
        Receive<ClusterEvent.MemberRemoved>(e => Lost(e.Member.Address, "was removed from the cluster"));
        Receive<LocalWorkerExited>(exited => job?.WorkerLost(exited.WorkerId, $"process exited with code {exited.ExitCode}"));
        Receive<StopJob>(stop =>
        {
            if (stop.Now) job?.Interrupt(stop.By);
            else job?.RequestStop(stop.By);
        });
        Receive<CheckpointNow>(request =>
        {
            if (job is null) request.Reply.TrySetException(new InvalidOperationException("no job is running"));
            else job.RequestCheckpoint(request.Reply);
        });
        ReceiveAny(message => job?.Handle(message));
    }

    void Start(StartJob start)
    {
        if (job is not null)
        {
            start.Accepted.TrySetException(new InvalidOperationException("a job is running: stop it first"));
            return;
        }
        try { job = start.Create(this); }
        catch (Exception e)
        {
            start.Accepted.TrySetException(e);
            return;
        }
        ended = start.Ended;
        start.Accepted.TrySetResult();
        foreach (var worker in waiting.Values.ToArray()) job.WorkerRegistered(worker);
        waiting.Clear();
    }

    protected override void PreStart() =>
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberRemoved));

    protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);

    void Lost(Address node, string why)
    {
        foreach (var (id, _) in workers.Where(w => w.Value.Path.Address.Equals(node)).ToArray())
        {
            waiting.Remove(id);
            job?.WorkerLost(id, $"{why} (node {node})");
        }
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

    void IJobHost.Ended(JobEnd end, string reason)
    {
        job = null; // its remaining background results and worker answers are of no use now
        ended!.TrySetResult(new JobOutcome(end, reason));
    }
}
