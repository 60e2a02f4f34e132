using Akka.Actor;
using Akka.Cluster;
using CondenseCluster.Shared.Cluster;

namespace CondenseCluster.Worker;

/// <summary>
/// The worker's actor (role <c>worker</c>): finds the coordinator through cluster membership, registers, and routes
/// the coordinator's commands to the <see cref="Replica"/>, whose thread does the work; results go back as messages.
/// It holds no training state of its own.
/// </summary>
sealed class WorkerActor : ReceiveActor, IWithTimers
{
    sealed record RetryRegistration;

    readonly RegisterWorker registration;
    readonly Replica replica;
    readonly TaskCompletionSource<int> exit;
    Address? coordinatorNode;
    bool accepted;

    public WorkerActor(RegisterWorker registration, Replica replica, TaskCompletionSource<int> exit)
    {
        (this.registration, this.replica, this.exit) = (registration, replica, exit);

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
            Log("registered; waiting for a job");
        });
        Receive<ClusterEvent.MemberRemoved>(e => CoordinatorLost(e.Member, "left the cluster"));

        Receive<JoinJob>(job => Reply(() => replica.Join(job, Log)));
        Receive<RunSteps>(segment =>
        {
            var coordinator = Sender;
            Reply(() => replica.RunSteps(segment, coordinator.Tell));
        });
        Receive<ComputeImportance>(request => Reply(() => replica.AverageImportance(request.MaskVersion)));
        Receive<ApplyMasks>(masks => Reply(() => replica.ApplyMasks(masks)));
        Receive<EvaluateShard>(request => Reply(() => replica.EvaluateShard(request.Step)));
        Receive<PrepareState>(request => Reply(() => replica.PrepareState(request.Step)));
        Receive<JobEnded>(ended =>
        {
            Log($"the job ended: {ended.Reason}");
            exit.TrySetResult(0);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart() =>
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.InitialStateAsEvents,
            typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));

    protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);

    void Register() => Context.ActorSelection(coordinatorNode + ClusterNode.CoordinatorPath).Tell(registration);

    /// <summary>Runs a command on the replica thread and sends its result (one message or several) to the sender; a failure as <see cref="WorkerFailed"/>.</summary>
    void Reply<T>(Func<T> command)
    {
        var coordinator = Sender;
        string id = registration.WorkerId;
        replica.Run(command).ContinueWith(done =>
        {
            if (done.IsCompletedSuccessfully)
            {
                if (done.Result is System.Collections.IEnumerable many) foreach (var message in many) coordinator.Tell(message);
                else coordinator.Tell(done.Result);
            }
            else
            {
                var error = done.Exception!.GetBaseException();
                Console.Error.WriteLine($"[{id}] error: {error.Message}");
                coordinator.Tell(new WorkerFailed(id, error.Message));
            }
        }, TaskScheduler.Default);
    }

    void CoordinatorLost(Member member, string what)
    {
        if (member.Address != coordinatorNode || exit.Task.IsCompleted) return;
        Log($"the coordinator {what}; stopping");
        exit.TrySetResult(1);
    }

    void Log(string message) => Console.WriteLine($"[{registration.WorkerId}] {message}");
}
