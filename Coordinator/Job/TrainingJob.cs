using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// The coordinator's job state machine (DESIGN.md §2): it moves the job from phase to phase, message by message, and
/// leaves each concern to a part of its own (membership, reply rounds, condensing, the step ledger, checkpoints,
/// recovery). Workers run the steps between boundaries on their own; at each boundary the job evaluates (sharded),
/// checkpoints (BatchNorm averaged, state fetched from rank 0) and condenses (masks decided here, acknowledged with
/// checksums). A lost worker makes every survivor abort what it runs; the job continues from the furthest whole step a
/// survivor holds, on a new ring, and redoes what was interrupted. A worker that registers mid-job is admitted at the
/// next step boundary with a copy of a peer's state. A graceful stop (a signal, the control API, a worker's SIGTERM) lets
/// the step in flight complete, checkpoints that boundary and ends the job.
/// </summary>
public sealed partial class TrainingJob
{
    enum Phase { WaitingForWorkers, Joining, LoadingState, Running, Importance, Masks, Evaluating, PreparingState, Fetching, Finishing, Recovering, Stopping, Ended }

    /// <summary>How far the job's start has come: the first ring forming, the replicas' starting state loading, training.</summary>
    enum Start { FormingRing, LoadingState, Training }

    /// <summary>Where the replicas' starting state comes from.</summary>
    enum Origin { Scratch, Checkpoint, WorkersMemory }

    readonly TrainingOptions options;
    readonly string optionsJson, jobKey;
    readonly RunSettings run;
    readonly (IImageDataset Train, IImageDataset Test) data;
    readonly MicroBatchPlan plan;
    readonly JobSchedule schedule;
    readonly ITrainingObserver observer;
    readonly IJobHost host;
    readonly IReplicaStates states;
    readonly ClusterSettings cluster;
    readonly JobMembership membership = new();
    readonly ReplyRound replies = new();
    readonly RecoveryRound recovery = new();
    readonly StepLedger ledger = new();
    readonly CondensingRound condensing;
    readonly CheckpointWriter checkpoints;
    readonly RunMetrics metrics;
    readonly List<JobBoundary> boundaries = [];
    readonly List<Accuracy> shards = [];
    readonly Stopwatch clock = new();
    readonly Stopwatch sinceCheckpoint = new();  // wall time since the last checkpoint, for --checkpoint-every-minutes
    Phase phase = Phase.WaitingForWorkers, interrupted;
    JobBoundary current;
    Start start = Start.FormingRing;
    Origin origin;
    StartingState? starting;  // what the workers load before the first step; none when they start from the seed or hold the job
    (RingChange? Change, string Why) ring;  // why the ring being formed is formed; no change for the first one
    long step, first, runFrom, runTo;
    int attempt;  // grows with every recovery: background results of an older attempt are stale
    Accuracy? lastTest;
    string agreed = "";  // the weight checksum all replicas reported last
    (string By, Stopwatch Clock)? stopping;  // a graceful stop asked for, and how long ago
    bool segmentCut;  // the running segment was asked to end early already
    long announcedCheckpoint = -1;  // the step of the last checkpoint whose CheckpointWritten event went out

    public TrainingJob(TrainingOptions options, RunSettings run, (IImageDataset Train, IImageDataset Test) data, StartingState? startFrom,
        ClusterSettings cluster, ITrainingObserver observer, IJobHost host, IReplicaStates states)
    {
        (this.options, this.run, this.data, this.observer, this.host, this.states, this.cluster) = (options, run, data, observer, host, states, cluster);
        optionsJson = JsonSerializer.Serialize(options);
        jobKey = HeldReplica.KeyOf(run.RunId, optionsJson);
        plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, data.Train.Count, options.Epochs);
        plan.Validate();
        schedule = JobSchedule.For(options, run, plan);
        metrics = new RunMetrics(options, plan);
        checkpoints = new CheckpointWriter(CheckpointStore.OfRun(run.OutputFolder), options);
        starting = startFrom;
        if (startFrom is not null)
        {
            step = first = startFrom.Step;
            origin = Origin.Checkpoint;
        }
        // The coordinator decides masks, so it keeps them: those of a new model of the job's shape, or of the starting state.
        var masks = startFrom is not null ? LayerMasks.FromState(options.Model, startFrom.State) : LayerMasks.Initial(options.Model);
        condensing = new CondensingRound(masks, options.Model.CondenseFactor);
    }

    public long MaskVersion => condensing.Version;
    public IReadOnlyList<LayerMask> Masks => condensing.Masks;

    /// <summary>Is the worker part of the job (a member of the ring, or waiting to be admitted)?</summary>
    public bool Knows(string workerId) => membership.Knows(workerId);

    /// <summary>A worker offered itself; the job starts once enough have, and admits later ones at a step boundary.</summary>
    public void WorkerRegistered(RegisterWorker worker)
    {
        host.Send(worker.WorkerId, new WorkerAccepted(worker.WorkerId));
        if (phase == Phase.Ended || Knows(worker.WorkerId)) return;
        var member = new JobMember(worker.WorkerId, worker.DataEndpoint, worker.Device, worker.Threads, worker.Held);
        membership.Wait(member, worker.RingGeneration);
        observer.Worker(member.Report(WorkerState.Registered));
        bool forming = phase == Phase.WaitingForWorkers;
        bool ours = worker.Held?.JobKey == jobKey;
        observer.Event(new WorkerArrived(member.Id, member.Device, member.Threads, member.Endpoint, ours ? worker.Held!.Step : null,
            membership.Joiners.Count, forming ? cluster.ExpectedWorkers : null, OtherRunStep: ours ? null : worker.Held?.Step));
        if (!forming) EndSegmentEarly();
        else if (membership.Joiners.Count == cluster.ExpectedWorkers) Join();
    }

    /// <summary>
    /// Stops the job at once (a second signal, <c>stop --now</c>): workers are told, the last checkpoint stays the place
    /// to resume from.
    /// </summary>
    public void Interrupt(string by)
    {
        if (phase != Phase.Ended) Stop(JobEnd.Aborted, by, null);
    }

    /// <summary>
    /// A graceful stop: the step in flight completes (the running segment is cut short, as for a checkpoint request),
    /// the state of that step boundary is checkpointed, then the job ends. It takes at most one step, the state fetch
    /// and the checkpoint write; a boundary's work already under way (condensing, evaluation) finishes first. Before
    /// training has begun nothing new is there to keep, and the job ends at once.
    /// </summary>
    public void RequestStop(string by)
    {
        if (phase == Phase.Ended || stopping is not null) return;
        stopping = (by, Stopwatch.StartNew());
        observer.Event(new StopRequested(by, CompletedSteps));
        if (start != Start.Training) Stop(JobEnd.Stopped, by, null);
        else if (phase == Phase.Finishing) Halt(checkpoints.Last!.Value.Writing); // the final state is being written; the conversion is not waited for
        else EndSegmentEarly(); // other phases reach a step boundary on their own (Next)
    }

    void Stop(JobEnd end, string by, double? seconds)
    {
        string? newest = checkpoints.Newest;
        string resuming = newest is not null ? $"resume with --resume {run.OutputFolder} (from its newest checkpoint, {Path.GetFileName(newest)})"
            : first > 0 ? $"no checkpoint since step {first}: resume from the checkpoint this run started from"
            : "no checkpoint had been written yet, so there is nothing to resume (--checkpoint-every N writes one every N steps)";
        observer.Event(new JobStopped(by, CompletedSteps, resuming, seconds));
        End(end, $"stopped by {by}");
    }

    // Steps complete one by one after `first` (each once, also across a recovery); `step` is only the last boundary.
    long CompletedSteps => Math.Max(step, first + metrics.Steps);

    /// <summary>
    /// Asks for a checkpoint at the next step boundary (the running segment is cut short, as for a join); the request
    /// is answered with the file once it is on disk, or fails if the job ends first.
    /// </summary>
    public void RequestCheckpoint(TaskCompletionSource<(string Path, long Step)> request)
    {
        if (phase == Phase.Ended)
        {
            request.TrySetException(new InvalidOperationException("the job has ended"));
            return;
        }
        checkpoints.Request(request);
        EndSegmentEarly();
    }

    /// <summary>Cuts the running segment short, after a step every replica agrees on through the ring, to reach a boundary sooner.</summary>
    void EndSegmentEarly()
    {
        if (phase != Phase.Running || segmentCut) return;
        segmentCut = true;
        foreach (var m in membership.Members) host.Send(m.Id, new Yield(membership.Generation));
    }

    /// <summary>A worker's process ended, or its node left or became unreachable: the job goes on without it.</summary>
    public void WorkerLost(string workerId, string why) => Lose(workerId, why, gone: true);

    public void Handle(object message)
    {
        if (phase == Phase.Ended) return;
        if (message is IWorkerReply reply && !Knows(reply.WorkerId))
        {
            observer.Event(new MessageIgnored(message.GetType().Name, reply.WorkerId, "it is not part of the job"));
            return;
        }
        try { Dispatch(message); }
        catch (Exception e)
        {
            // The job must end cleanly, telling its workers, rather than let the actor restart with a fresh job.
            Fail($"internal error handling {message.GetType().Name}: {e}");
        }
    }

    void Dispatch(object message)
    {
        switch (message)
        {
            case WorkerFailed failed when failed.DataPlane: RingFailed($"{failed.WorkerId}'s ring failed", failed.Error, failed.Failure); break;
            case WorkerFailed failed: Exclude(failed.WorkerId, $"it failed: {failed.Error}"); break;
            case RingBroken broken when broken.RingGeneration == membership.Generation: RingFailed($"{broken.WorkerId}'s ring broke", broken.Error, null); break;
            case RingBroken: break; // about a ring the job has replaced since
            case WorkDone done when done.Attempt == attempt: Dispatch(done.Result); break;
            case WorkDone: break; // of an attempt a recovery interrupted
            case WorkFailed failed when failed.Attempt == attempt:
                if (phase is Phase.Finishing or Phase.Stopping) Fail($"{failed.What} failed: {failed.Error}");
                else Recover($"{failed.What} failed: {failed.Error}");
                break;
            case WorkFailed: break;
            case ReplicaReady ready when Expect(Phase.Joining, ready.WorkerId):
                replies.Checksum(ready.WorkerId, ready.WeightChecksum);
                if (Complete("weights", step)) Formed();
                break;
            case StatesLoaded loaded when phase == Phase.LoadingState:
                replies.Checksums(loaded.Checksums);
                if (Complete("resumed weights", step)) Loaded();
                break;
            case MasksRead read when phase == Phase.LoadingState:
                condensing.Adopt(read.Masks);
                observer.Event(new MasksAdopted(step, membership.Members[0].Id, read.Masks.Max(m => m.Stage)));
                observer.Masks(condensing.Version, step, condensing.Masks);
                Loaded();
                break;
            case StepReport report when phase is Phase.Running or Phase.Recovering: Record(report); break;
            case StepsDone done when Expect(Phase.Running, done.WorkerId):
                replies.Checksum(done.WorkerId, done.WeightChecksum);
                if (Complete("weights", done.Step)) Boundaries(step = done.Step);
                break;
            case StepsAborted stopped when Expect(Phase.Recovering, stopped.WorkerId):
                recovery.Stopped(stopped.WorkerId, stopped.Step);
                if (replies.Pending.Count == 0) Replan();
                break;
            case WorkersGone gone when phase == Phase.Recovering: Probed(gone.Workers); break;
            case WorkersGone: break; // a probe that ended after the recovery
            case LayerImportance layer when phase == Phase.Importance && layer.MaskVersion == condensing.Version: Importance(layer); break;
            case MasksApplied applied when Expect(Phase.Masks, applied.WorkerId) && applied.MaskVersion == condensing.Version: Applied(applied); break;
            case ShardEvaluated shard when Expect(Phase.Evaluating, shard.WorkerId):
                shards.Add(new Accuracy(shard.Top1, shard.Top5, shard.Loss, shard.Samples));
                if (replies.Pending.Count == 0) Evaluated();
                break;
            case StatePrepared prepared when Expect(Phase.PreparingState, prepared.WorkerId):
                replies.Checksum(prepared.WorkerId, prepared.WeightChecksum);
                if (Complete("weights", step)) FetchState();
                break;
            case StateFetched fetched when phase == Phase.Fetching: Fetched(fetched.State); break;
            case CheckpointSaved saved:
                announcedCheckpoint = saved.Step;
                observer.Event(new CheckpointWritten(saved.Path, saved.Step));
                break;
            case StopCheckpointed saved when phase == Phase.Stopping:
                if (announcedCheckpoint != saved.Step) observer.Event(new CheckpointWritten(saved.Path, saved.Step));
                Stop(JobEnd.Stopped, stopping!.Value.By, stopping.Value.Clock.Elapsed.TotalSeconds);
                break;
            case WorkerTerminating terminating: RequestStop($"{terminating.Signal} of {terminating.WorkerId}"); break;
            case WorkerLeaving leaving: Lose(leaving.WorkerId, $"it left at once on {leaving.Signal}", gone: true); break;
            // A full or read-only disk costs this checkpoint, not the job: the workers hold the state, the next boundary tries again.
            case CheckpointFailed failed: observer.Event(new CheckpointWriteFailed(failed.Step, failed.Error, checkpoints.Newest)); break;
            case JobCompleted when phase == Phase.Finishing: End(JobEnd.Completed, "the job completed"); break;
            case StepsDone or StepsAborted or ReplicaReady or MasksApplied or LayerImportance when phase == Phase.Recovering:
                break; // answers to what the recovery cut short
            default:
                observer.Event(new MessageIgnored(message.GetType().Name, (message as IWorkerReply)?.WorkerId, $"unexpected in phase {phase}"));
                break;
        }
    }

    void Background(string what, Func<Task<object>> work)
    {
        int at = attempt;
        host.Background(async () => new WorkDone(at, await work()), error => new WorkFailed(at, what, error));
    }

    /// <summary>Is the reply expected in this phase from a worker that owes one? It then no longer does.</summary>
    bool Expect(Phase expected, string workerId) => phase == expected && replies.Answered(workerId);

    /// <summary>When every worker has answered: true if their weight checksums agree (see <see cref="Agree"/>).</summary>
    bool Complete(string what, long atStep)
    {
        if (replies.Complete(membership.Count) is not { } reports || !Agree(what, atStep, reports)) return false;
        agreed = reports[0].Checksum;
        return true;
    }

    /// <summary>
    /// Do the replicas' checksums agree? If not, a diverging minority is excluded and the job recovers with the
    /// majority; without a majority the job stops rather than train replicas that disagree.
    /// </summary>
    bool Agree(string what, long atStep, IReadOnlyList<(string Worker, string Checksum)> reports)
    {
        var diverging = ReplicaAgreement.Diverging(reports, out string reference);
        if (ReplicaAgreement.Describe(what, atStep, reports, diverging, reference) is not string divergence) return true;
        if (!ReplicaAgreement.MajorityAgrees(reports, diverging))
        {
            Fail($"{divergence}; the job stops rather than train replicas that disagree");
            return false;
        }
        foreach (var worker in diverging) Exclude(worker, divergence);
        return false;
    }

    void Ask(string workerId, object message)
    {
        replies.Ask(workerId);
        host.Send(workerId, message);
    }

    void AskAll(object message)
    {
        replies.Clear();
        foreach (var m in membership.Members) Ask(m.Id, message);
    }

    void Fail(string error)
    {
        observer.Event(new JobFailed(error));
        End(JobEnd.Failed, error);
    }

    void End(JobEnd end, string reason)
    {
        phase = Phase.Ended;
        foreach (var m in membership.Everyone)
        {
            host.Send(m.Id, new JobEnded(reason));
            observer.Worker(m.Report(WorkerState.Finished));
        }
        checkpoints.Abandon(reason);
        host.Ended(end, reason);
    }
}

/// <summary>A replica state (<see cref="TrainingEngine.SaveState"/>'s format) the workers start from at <paramref name="Step"/>: a checkpoint's, or --init-from's.</summary>
public sealed record StartingState(long Step, byte[] State, string From);
