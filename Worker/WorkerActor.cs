using Akka.Actor;
using Akka.Cluster;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using Grpc.Core;

namespace CondenseCluster.Worker;

/// <summary>How a worker's time in one cluster ended: its job is over (with the process exit code), or its coordinator is gone.</summary>
sealed record WorkerExit(int? ExitCode)
{
    public static readonly WorkerExit CoordinatorLost = new((int?)null);
}

/// <summary>SIGTERM or SIGINT reached the worker's process; <paramref name="Repeated"/>: not the first.</summary>
sealed record StopSignal(string Signal, bool Repeated);

/// <summary>
/// The worker's actor (role <c>worker</c>): finds the coordinator through cluster membership, registers, and routes
/// the coordinator's commands to the <see cref="Replica"/>, whose thread does the work; results go back as messages.
/// Aborts and yields act on the replica at once, as its thread may be busy in a step. It holds no training state.
/// A stop signal during a job either asks the coordinator for a graceful stop (the worker exits when the job ends) or
/// leaves at once; outside a job, or the second time, the worker leaves at once.
/// </summary>
sealed class WorkerActor : ReceiveActor, IWithTimers
{
    sealed record RetryRegistration;
    sealed record GiveUp;
    sealed record NeighbourLost(long RingGeneration, string Error);

    readonly Func<RegisterWorker> registration;
    readonly string id;
    readonly Replica replica;
    readonly TaskCompletionSource<WorkerExit> exit;
    Action<long, AllReduceException>? neighbourLost;
    Address? coordinatorNode;
    bool accepted, inJob;

    public WorkerActor(Func<RegisterWorker> registration, string id, Replica replica, TimeSpan coordinatorTimeout, bool checkpointOnSigterm,
        TaskCompletionSource<WorkerExit> exit)
    {
        (this.registration, this.id, this.replica, this.exit) = (registration, id, replica, exit);
        Timers.StartSingleTimer("give-up", new GiveUp(), coordinatorTimeout);
        Receive<GiveUp>(_ =>
        {
            Console.Error.WriteLine($"[{id}] error: no coordinator accepted this worker within {coordinatorTimeout.TotalSeconds:0} s " +
                "(--coordinator-timeout); is the coordinator running at the --seed address?");
            exit.TrySetResult(new WorkerExit(1));
        });

        Receive<ClusterEvent.MemberUp>(up =>
        {
            if (!up.Member.HasRole("coordinator") || coordinatorNode is not null) return;
            coordinatorNode = up.Member.Address;
            Log($"joined the cluster of the coordinator at {coordinatorNode}");
            Register();
            Timers.StartPeriodicTimer("register", new RetryRegistration(), TimeSpan.FromSeconds(2));
        });
        Receive<RetryRegistration>(_ => { if (!accepted) Register(); });
        Receive<WorkerAccepted>(_ =>
        {
            accepted = true;
            Timers.Cancel("register");
            Timers.Cancel("give-up");
            Log("registered; waiting for a job");
        });
        Receive<WorkerRefused>(refused =>
        {
            Console.Error.WriteLine($"[{id}] error: the coordinator refused this worker: {refused.Reason}");
            exit.TrySetResult(new WorkerExit(1));
        });
        Receive<ClusterEvent.MemberRemoved>(e =>
        {
            if (e.Member.Address != coordinatorNode) return;
            Log("the coordinator left the cluster");
            exit.TrySetResult(WorkerExit.CoordinatorLost);
        });

        Receive<JoinJob>(job =>
        {
            inJob = true;
            Reply(() => replica.Join(job, Log));
        });
        Receive<StopSignal>(signal =>
        {
            if (checkpointOnSigterm && inJob && !signal.Repeated)
            {
                Log($"{signal.Signal}: asking the coordinator to checkpoint the job at the next step boundary and stop it (again: leave at once)");
                Coordinator.Tell(new WorkerTerminating(id, signal.Signal));
                return;
            }
            // The ring's neighbours see the connection close at once, and the job goes on without this worker.
            Log($"{signal.Signal}: leaving at once");
            if (accepted) Coordinator.Tell(new WorkerLeaving(id, signal.Signal));
            replica.Abort(replica.Generation);
            exit.TrySetResult(new WorkerExit(0));
        });
        Receive<RunSteps>(segment =>
        {
            var coordinator = Sender;
            Reply(() => replica.RunSteps(segment, coordinator.Tell));
        });
        Receive<Yield>(request => replica.Yield(request.RingGeneration));
        Receive<AbortSteps>(request =>
        {
            replica.Abort(request.RingGeneration);
            Reply(() => new StepsAborted(id, replica.Step)); // runs once the aborted command has ended
        });
        Receive<ComputeImportance>(request => Reply(() => replica.AverageImportance(request.MaskVersion)));
        Receive<ApplyMasks>(masks => Reply(() => replica.ApplyMasks(masks)));
        Receive<EvaluateShard>(request => Reply(() => replica.EvaluateShard(request.Step)));
        Receive<PrepareState>(request => Reply(() => replica.PrepareState(request.Step)));
        // The coordinator hears of a lost neighbour at once: the next command using the ring might come only after
        // the failure detector's verdict (a mask broadcast waits for every worker's answer).
        Receive<NeighbourLost>(lost =>
        {
            if (accepted && !exit.Task.IsCompleted && lost.RingGeneration == replica.Generation)
                Coordinator.Tell(new RingBroken(id, lost.RingGeneration, lost.Error));
        });
        Receive<JobEnded>(ended =>
        {
            Log($"the job ended: {ended.Reason}");
            exit.TrySetResult(new WorkerExit(0));
        });
        Receive<Excluded>(excluded =>
        {
            Console.Error.WriteLine($"[{id}] excluded from the job: {excluded.Reason}");
            exit.TrySetResult(new WorkerExit(1));
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.InitialStateAsEvents,
            typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
        var self = Self;
        neighbourLost = (generation, error) => self.Tell(new NeighbourLost(generation, error.Message));
        replica.NeighbourLost += neighbourLost;
    }

    protected override void PostStop()
    {
        replica.NeighbourLost -= neighbourLost;
        Cluster.Get(Context.System).Unsubscribe(Self);
    }

    /// <summary>The coordinator actor on the coordinator's node, for messages that answer no command of its.</summary>
    ActorSelection Coordinator => Context.ActorSelection(coordinatorNode + ClusterNode.CoordinatorPath);

    void Register() => Coordinator.Tell(registration());

    /// <summary>
    /// Runs a command on the replica thread and sends its result (one message or several) to the sender; a failure as
    /// <see cref="WorkerFailed"/>, except the abort the coordinator itself ordered.
    /// </summary>
    void Reply<T>(Func<T> command)
    {
        if (exit.Task.IsCompleted) return; // leaving: a command sent before the coordinator knew must not run (nor rejoin a ring)
        var coordinator = Sender;
        replica.Run(command).ContinueWith(done =>
        {
            if (done.IsCompletedSuccessfully)
            {
                if (done.Result is System.Collections.IEnumerable many) foreach (var message in many) coordinator.Tell(message);
                else coordinator.Tell(done.Result);
                return;
            }
            var error = done.Exception!.GetBaseException();
            if (error is AllReduceException { Reason: AllReduceFailure.Aborted }) return;
            // Once this worker's job is over (ended, excluded, coordinator gone), a step still in flight fails as its
            // peers stop: expected, and nobody is left to report it to.
            if (exit.Task.IsCompleted) return;
            Console.Error.WriteLine($"[{id}] error: {error.Message}");
            coordinator.Tell(new WorkerFailed(id, error.Message, DataPlane: error is AllReduceException or RpcException,
                (error as AllReduceException)?.Reason));
        }, TaskScheduler.Default);
    }

    void Log(string message) => Console.WriteLine($"[{id}] {message}");
}
