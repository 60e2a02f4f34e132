using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;

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

/// <summary>Background work of the job ended; <paramref name="Attempt"/> tells results of an interrupted attempt apart.</summary>
sealed record WorkDone(int Attempt, object Result);
sealed record WorkFailed(int Attempt, string What, string Error);
sealed record StatesLoaded(IReadOnlyList<(string Worker, string Checksum)> Checksums);
sealed record StateFetched(byte[] State);
sealed record MasksRead(IReadOnlyList<LayerMask> Masks);
sealed record WorkersGone(IReadOnlyList<string> Workers);
sealed record CheckpointWritten(string Path);
sealed record CheckpointFailed(string Error);
sealed record JobCompleted(TrainingSummary Summary);

/// <summary>
/// The coordinator's job state machine (DESIGN.md §2). Workers run the steps between boundaries on their own; at each
/// boundary the job evaluates (sharded), checkpoints (BatchNorm averaged, state fetched from rank 0) and condenses
/// (importance averaged by the workers, masks decided here, broadcast with a version, acknowledged with checksums).
/// Replicas are checked for agreement at every report that carries a checksum.
/// Membership changes between and inside steps: a lost worker (broken ring, process gone, unreachable) makes every
/// survivor abort what it runs; the job continues from the furthest whole step a survivor holds, on a new ring, and
/// redoes what was interrupted. A worker that registers mid-job is admitted at the next step boundary with a copy of a
/// peer's state.
/// </summary>
public sealed class TrainingJob
{
    enum Phase { WaitingForWorkers, Joining, LoadingState, Running, Importance, Masks, Evaluating, PreparingState, Fetching, Finishing, Recovering, Ended }
    enum Boundary { Condense, Evaluate, Checkpoint, Run, Finish }

    sealed record Member(string Id, string Endpoint, string Device, int Threads, HeldReplica? Held);

    /// <summary>How often workers that have not answered an abort are probed, and how long they have to answer at all.</summary>
    static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(250), AnswerTimeout = TimeSpan.FromSeconds(15);

    readonly TrainingOptions options;
    readonly string optionsJson, jobKey;
    readonly RunSettings run;
    readonly (IImageDataset Train, IImageDataset Test) data;
    readonly MicroBatchPlan plan;
    readonly JobSchedule schedule;
    readonly ITrainingObserver observer;
    readonly IJobHost host;
    readonly IReplicaStates states;
    readonly CheckpointStore store;
    readonly ClusterSettings cluster;
    (long Step, byte[] State)? resume;
    readonly List<Member> members = [], joiners = [];
    readonly List<Boundary> boundaries = [];
    readonly HashSet<string> pending = [];
    readonly List<(string Worker, string Checksum)> checksums = [];
    readonly Dictionary<string, long> aborted = [];
    readonly List<Accuracy> shards = [];
    readonly Dictionary<long, List<StepReport>> stepReports = [];
    readonly Dictionary<string, List<StepReport>> byWorker = [];
    readonly List<double> stepMs = [];
    readonly List<TaskCompletionSource<(string Path, long Step)>> checkpointRequests = [];
    readonly Stopwatch clock = new(), epochClock = new(), rejoinClock = new();
    Phase phase = Phase.WaitingForWorkers, interrupted;
    Boundary current;
    bool started, adopted, beginAgain, recovering;
    long step, first, runFrom, runTo, generation;
    int attempt;           // grows with every recovery: background results of an older attempt are stale
    string? rejoinReason;  // why the ring is being formed anew (a loss, a join)
    Task checkpointWrites = Task.CompletedTask;
    IReadOnlyList<LayerMask> masks;
    long maskVersion;
    IReadOnlyList<LayerMask>? decided;
    float[][,] importance = [];
    int importanceReceived;
    double epochLoss, epochCorrect, epochSamples;
    Accuracy? lastTest;
    string agreed = "";  // the weight checksum all replicas reported last

    public TrainingJob(TrainingOptions options, RunSettings run, (IImageDataset Train, IImageDataset Test) data, LoadedCheckpoint? resumeFrom,
        ClusterSettings cluster, ITrainingObserver observer, IJobHost host, IReplicaStates states)
    {
        (this.options, this.run, this.data, this.observer, this.host, this.states) = (options, run, data, observer, host, states);
        this.cluster = cluster;
        optionsJson = JsonSerializer.Serialize(options);
        jobKey = HeldReplica.KeyOf(optionsJson);
        plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, data.Train.Count, options.Epochs);
        plan.Validate();
        schedule = new JobSchedule(plan, options.Model.CondenseFactor, options.CheckpointEverySteps,
            Math.Min(plan.TotalSteps, run.StopAfterStep ?? plan.TotalSteps));
        store = new CheckpointStore(Path.Combine(run.OutputFolder, "checkpoints"));
        // The coordinator decides masks, so it keeps them: those of a new model of the job's shape, or of the resumed state.
        if (resumeFrom is not null)
        {
            resume = (resumeFrom.Header.Step, resumeFrom.ReadState());
            step = first = resumeFrom.Header.Step;
        }
        using var mirror = Model(resume?.State);
        masks = ModelCondensing.Masks(mirror);
    }

    /// <summary>A model of the job's shape on the CPU, holding <paramref name="state"/> (a replica's, <see cref="TrainingEngine.SaveState"/>'s format) if given.</summary>
    CondenseNet Model(byte[]? state)
    {
        var model = new CondenseNet(options.Model);
        if (state is not null)
            using (var reader = new BinaryReader(new MemoryStream(state))) model.load(reader, strict: true);
        return model;
    }

    public long MaskVersion => maskVersion;
    public IReadOnlyList<LayerMask> Masks => masks;

    /// <summary>Is the worker part of the job (a member of the ring, or waiting to be admitted)?</summary>
    public bool Knows(string workerId) => members.Concat(joiners).Any(m => m.Id == workerId);

    /// <summary>A worker offered itself; the job starts once enough have, and admits later ones at a step boundary.</summary>
    public void WorkerRegistered(RegisterWorker worker)
    {
        host.Send(worker.WorkerId, new WorkerAccepted(worker.WorkerId));
        if (phase == Phase.Ended || Knows(worker.WorkerId)) return;
        generation = Math.Max(generation, worker.RingGeneration);
        var member = new Member(worker.WorkerId, worker.DataEndpoint, worker.Device, worker.Threads, worker.Held);
        string what = $"{worker.WorkerId} registered ({worker.Device}, {worker.Threads} threads, data plane {worker.DataEndpoint}" +
            (worker.Held is { } held && held.JobKey == jobKey ? $", holding this job at step {held.Step})" : ")");
        Report(member, WorkerState.Registered);
        if (phase == Phase.WaitingForWorkers)
        {
            members.Add(member);
            observer.Event($"{what}; {members.Count} of {cluster.ExpectedWorkers} workers", EventKind.Worker);
            if (members.Count == cluster.ExpectedWorkers) Join();
            return;
        }
        joiners.Add(member);
        observer.Event($"{what}; it joins at the next step boundary", EventKind.Worker);
        EndSegmentEarly();
    }

    /// <summary>The user stopped the job (Ctrl+C, the control API): workers are told, the last checkpoint stays the place to resume from.</summary>
    public void Interrupt(string by)
    {
        if (phase == Phase.Ended) return;
        string? newest = store.List().FirstOrDefault();
        string resuming = newest is not null ? $"resume with --resume {run.OutputFolder} (from its newest checkpoint, {Path.GetFileName(newest)})"
            : first > 0 ? $"no checkpoint since step {first}: resume from the checkpoint this run started from"
            : "no checkpoint had been written yet, so there is nothing to resume (--checkpoint-every N writes one every N steps)";
        // Steps complete one by one after `first` (each once, also across a recovery); `step` is only the last boundary.
        observer.Event($"stopped by {by} after {Math.Max(step, first + stepMs.Count)} steps; {resuming}");
        End(130, $"stopped by {by}");
    }

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
        checkpointRequests.Add(request);
        EndSegmentEarly();
    }

    /// <summary>Cuts the running segment short, after a step every replica agrees on through the ring, to reach a boundary sooner.</summary>
    void EndSegmentEarly()
    {
        if (phase == Phase.Running) foreach (var m in members) host.Send(m.Id, new Yield(generation));
    }

    /// <summary>A worker's process ended, or its node left or became unreachable: the job goes on without it.</summary>
    public void WorkerLost(string workerId, string why) => Lose(workerId, why, gone: true);

    public void Handle(object message)
    {
        if (phase == Phase.Ended) return;
        if (message is IWorkerReply reply && !Knows(reply.WorkerId))
        {
            observer.Event($"ignored {message.GetType().Name} from {reply.WorkerId}, which is not part of the job", EventKind.Failure);
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
            case WorkerFailed failed when failed.DataPlane: RingFailed($"{failed.WorkerId}'s ring failed", failed.Error); break;
            case WorkerFailed failed: Exclude(failed.WorkerId, $"it failed: {failed.Error}"); break;
            case RingBroken broken when broken.RingGeneration == generation: RingFailed($"{broken.WorkerId}'s ring broke", broken.Error); break;
            case RingBroken: break; // about a ring the job has replaced since
            case WorkDone done when done.Attempt == attempt: Dispatch(done.Result); break;
            case WorkDone: break; // of an attempt a recovery interrupted
            case WorkFailed failed when failed.Attempt == attempt:
                if (phase == Phase.Finishing) Fail($"{failed.What} failed: {failed.Error}");
                else Recover($"{failed.What} failed: {failed.Error}");
                break;
            case WorkFailed: break;
            case ReplicaReady ready when Expect(Phase.Joining, ready.WorkerId):
                checksums.Add((ready.WorkerId, ready.WeightChecksum));
                if (Complete("weights", step)) Formed();
                break;
            case StatesLoaded loaded when phase == Phase.LoadingState:
                checksums.AddRange(loaded.Checksums);
                if (Complete("resumed weights", step)) Boundaries(step);
                break;
            case MasksRead read when phase == Phase.LoadingState:
                masks = read.Masks;
                observer.Event($"masks of step {step} read from {members[0].Id}: stage {masks.Max(m => m.Stage)}", EventKind.Condensing);
                observer.Masks(maskVersion, step, masks);
                Boundaries(step);
                break;
            case StepReport report when phase is Phase.Running or Phase.Recovering: Record(report); break;
            case StepsDone done when Expect(Phase.Running, done.WorkerId):
                checksums.Add((done.WorkerId, done.WeightChecksum));
                if (Complete("weights", done.Step)) Boundaries(step = done.Step);
                break;
            case StepsAborted stopped when Expect(Phase.Recovering, stopped.WorkerId):
                aborted[stopped.WorkerId] = stopped.Step;
                if (pending.Count == 0) Replan();
                break;
            case WorkersGone gone when phase == Phase.Recovering:
                foreach (var id in gone.Workers) Lose(id, "its data plane refuses connections: the process is gone", gone: true);
                if (phase != Phase.Recovering) break;
                if (rejoinClock.Elapsed < AnswerTimeout) Probe(ProbeInterval);
                else foreach (var id in pending.ToArray()) Lose(id, $"did not stop its steps within {AnswerTimeout.TotalSeconds:0} s", gone: true);
                break;
            case WorkersGone: break; // a probe that ended after the recovery
            case LayerImportance layer when phase == Phase.Importance && layer.MaskVersion == maskVersion: Importance(layer); break;
            case MasksApplied applied when Expect(Phase.Masks, applied.WorkerId) && applied.MaskVersion == maskVersion: Applied(applied); break;
            case ShardEvaluated shard when Expect(Phase.Evaluating, shard.WorkerId):
                shards.Add(new Accuracy(shard.Top1, shard.Top5, shard.Loss, shard.Samples));
                if (pending.Count == 0) Evaluated();
                break;
            case StatePrepared prepared when Expect(Phase.PreparingState, prepared.WorkerId):
                checksums.Add((prepared.WorkerId, prepared.WeightChecksum));
                if (Complete("weights", step)) FetchState();
                break;
            case StateFetched fetched when phase == Phase.Fetching: Fetched(fetched.State); break;
            case CheckpointWritten written: observer.Event($"checkpoint {written.Path}", EventKind.Checkpoint); break;
            case CheckpointFailed failed: Fail($"writing a checkpoint failed: {failed.Error}"); break;
            case JobCompleted when phase == Phase.Finishing: End(0, "the job completed"); break;
            case StepsDone or StepsAborted or ReplicaReady or MasksApplied or LayerImportance when phase == Phase.Recovering:
                break; // answers to what the recovery cut short
            default:
                observer.Event($"ignored an unexpected {message.GetType().Name}{(message is IWorkerReply r ? $" from {r.WorkerId}" : "")} in phase {phase}", EventKind.Failure);
                break;
        }
    }

    /// <summary>A worker's ring failed, so a peer may be gone: the recovery finds out who, unless one runs already or no ring does.</summary>
    void RingFailed(string what, string error)
    {
        if (phase is not (Phase.Recovering or Phase.Finishing or Phase.WaitingForWorkers)) Recover($"{what}: {NameEndpoints(error)}");
    }

    /// <summary>A worker's data-plane error names its peers by endpoint; say which worker each one is.</summary>
    string NameEndpoints(string error) =>
        members.Aggregate(error, (text, m) => text.Replace($"({m.Endpoint})", $"({m.Id} at {m.Endpoint})"));

    /// <summary>Forms the first ring; a restarted coordinator continues from the workers' memory when they hold the job further than the checkpoint.</summary>
    void Join()
    {
        Admit();
        observer.Event($"cluster formed: {string.Join(", ", members.Select((m, rank) => $"{m.Id} (rank {rank})"))}", EventKind.Worker);
        if (cluster.GradientPrecision == WirePrecision.Float16)
            observer.Event("gradients cross the ring as half floats (--gradient-precision fp16): half the bytes, summed to about 3 significant digits", EventKind.Worker);
        var holder = members.Where(m => m.Held is { } held && held.JobKey == jobKey && held.Step > step)
            .OrderByDescending(m => m.Held!.Step).FirstOrDefault();
        if (holder is not null)
        {
            adopted = true;
            step = first = holder.Held!.Step;
            observer.Event($"continuing from the workers' memory at step {step} (held by {holder.Id})" +
                (resume is { } r ? $", not from the checkpoint of step {r.Step}: no committed step is lost" : ""), EventKind.Recovered);
            resume = null;
        }
        FormRing(holder is null ? null : new StateSource(holder.Endpoint, step), "the job starts");
    }

    /// <summary>Sends every member its rank in a new ring; those not at <paramref name="from"/>'s step copy that state from the peer.</summary>
    void FormRing(StateSource? from, string reason)
    {
        phase = Phase.Joining;
        rejoinReason = reason;
        generation++;
        var endpoints = members.Select(m => m.Endpoint).ToArray();
        checksums.Clear();
        for (int rank = 0; rank < members.Count; rank++)
            Send(members[rank].Id, new JoinJob(optionsJson, rank, endpoints, generation, cluster.ChecksumEvery, cluster.BucketFloats, cluster.CompressGradients,
                cluster.GradientPrecision, from, cluster.Topology));
    }

    /// <summary>Every member stands in the new ring at the same step with identical weights.</summary>
    void Formed()
    {
        foreach (var m in members) Report(m, WorkerState.Training);
        bool recovered = recovering;
        recovering = false;
        if (!started)
        {
            Started();
            return;
        }
        if (beginAgain)
        {
            beginAgain = false;
            Begin();
            return;
        }
        observer.Event($"{rejoinReason}: training continues at step {step} with {members.Count} workers " +
            $"({string.Join(", ", members.Select(m => m.Id))}), {rejoinClock.Elapsed.TotalSeconds:F2} s after it began", recovered ? EventKind.Recovered : EventKind.Worker);
        Next();
    }

    void Started()
    {
        started = true;
        clock.Start();
        epochClock.Start();
        observer.Started(new RunStarted($"{options.Arch} on {data.Train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, $"{members.Count} workers ({string.Join(", ", members.Select(m => m.Device).Distinct())})",
            members.Min(m => m.Threads), run.Allocator, run.OutputFolder));
        observer.Masks(maskVersion, step, masks);
        Begin();
    }

    /// <summary>Brings the replicas to the job's starting state: as they are, the checkpoint's, or the workers' own (masks read back).</summary>
    void Begin()
    {
        if (adopted)
        {
            // The masks to decide from are the ones the replicas hold.
            phase = Phase.LoadingState;
            var (source, at) = (members[0], step);
            Background($"reading the masks of {source.Id}", async () =>
            {
                using var mirror = Model(await states.FetchAsync(source.Endpoint, at));
                return new MasksRead(ModelCondensing.Masks(mirror));
            });
            return;
        }
        if (resume is not { } state)
        {
            Boundaries(step);
            return;
        }
        phase = Phase.LoadingState;
        var targets = members.ToArray();
        Background("loading the resumed state into the workers", async () =>
        {
            var loaded = await Task.WhenAll(targets.Select(async m => (m.Id, await states.LoadAsync(m.Endpoint, state.Step, state.State))));
            return new StatesLoaded(loaded);
        });
        observer.Event($"resuming at step {state.Step}: loading the checkpoint's state into {targets.Length} workers", EventKind.Checkpoint);
    }

    /// <summary>Plans what happens at step <paramref name="at"/> before the steps after it run, and goes on.</summary>
    void Boundaries(long at)
    {
        PlanBoundaries(at);
        Next();
    }

    void PlanBoundaries(long at)
    {
        if (at > first || at == schedule.LastStep)
        {
            if (schedule.EpochEndsAt(at)) boundaries.Add(Boundary.Evaluate);
            if (schedule.CheckpointAt(at) && at < schedule.LastStep) boundaries.Add(Boundary.Checkpoint);
        }
        if (checkpointRequests.Count > 0 && at < schedule.LastStep && !boundaries.Contains(Boundary.Checkpoint)) boundaries.Add(Boundary.Checkpoint);
        if (at == schedule.LastStep) boundaries.Add(Boundary.Finish);
        else
        {
            if (MasksBehind(at)) boundaries.Add(Boundary.Condense);
            boundaries.Add(Boundary.Run);
        }
    }

    bool MasksBehind(long at) =>
        masks.Any(m => CondensingSchedule.NextStage(m.Stage, CondensingSchedule.Progress(at, plan.TotalSteps), options.Model.CondenseFactor) is not null);

    void Next()
    {
        current = boundaries[0];
        boundaries.RemoveAt(0);
        switch (current)
        {
            case Boundary.Run when joiners.Count > 0:
                // Admit new workers now, at a step boundary: they copy rank 0's state and the segment runs on the larger ring.
                boundaries.Insert(0, Boundary.Run);
                var source = members[0];
                var admitted = Admit();
                rejoinClock.Restart();
                FormRing(new StateSource(source.Endpoint, step), $"{string.Join(", ", admitted)} admitted at step {step} with the state of {source.Id}");
                break;
            case Boundary.Run:
                phase = Phase.Running;
                (runFrom, runTo) = (step, schedule.NextBoundary(step));
                SendAll(new RunSteps(step, runTo));
                break;
            case Boundary.Condense when decided is not null:
                // A recovery interrupted the broadcast: the decision stands, and installing it again is harmless.
                phase = Phase.Masks;
                SendAll(MaskBroadcast());
                break;
            case Boundary.Condense:
                phase = Phase.Importance;
                maskVersion++;
                importance = new float[masks.Count][,];
                importanceReceived = 0;
                SendAll(new ComputeImportance(maskVersion));
                pending.Clear(); // rank 0 answers with the layers; every worker's failure still arrives as WorkerFailed
                break;
            case Boundary.Evaluate:
                phase = Phase.Evaluating;
                shards.Clear();
                SendAll(new EvaluateShard(step));
                break;
            case Boundary.Checkpoint:
            case Boundary.Finish:
                phase = Phase.PreparingState;
                SendAll(new PrepareState(step));
                break;
        }
    }

    void Record(StepReport report)
    {
        if (report.Step < step) return; // of a step already settled by a recovery
        if (!stepReports.TryGetValue(report.Step, out var reports)) stepReports[report.Step] = reports = [];
        reports.Add(report);
        if (!byWorker.TryGetValue(report.WorkerId, out var mine)) byWorker[report.WorkerId] = mine = [];
        mine.Add(report);
        if (members.Find(m => m.Id == report.WorkerId) is { } member)
            observer.Worker(Describe(member, WorkerState.Training) with
            {
                Step = report.Step, Samples = report.Samples, ComputeMs = report.ComputeMs, AllReduceMs = report.AllReduceMs,
                DataWaitMs = report.DataWaitMs, AllReduceBytes = report.AllReduceBytes,
            });
        if (reports.Count < members.Count) return;
        stepReports.Remove(report.Step);
        var withChecksums = reports.Where(r => r.WeightChecksum is not null).Select(r => (r.WorkerId, r.WeightChecksum!)).ToList();
        if (withChecksums.Count == members.Count && !Agree("weights", report.Step + 1, withChecksums)) return;
        StepCompleted(report.Step, reports);
    }

    void StepCompleted(long completed, List<StepReport> reports)
    {
        double loss = reports.Sum(r => r.LossSum), correct = reports.Sum(r => r.Correct), samples = reports.Sum(r => r.Samples);
        double ms = reports.Max(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs);
        stepMs.Add(ms);
        (epochLoss, epochCorrect, epochSamples) = (epochLoss + loss, epochCorrect + correct, epochSamples + samples);
        int stage = masks.Max(m => m.Stage);
        observer.Step(new StepMetrics(completed, plan.EpochOf(completed), loss / samples, correct / samples,
            LearningRate.Cosine(options.LearningRate, completed, plan.TotalSteps), stage, options.Model.CondenseFactor - 1,
            samples / (ms / 1000), ms, reports.Max(r => r.ComputeMs), reports.Max(r => r.DataWaitMs)));
    }

    void Importance(LayerImportance layer)
    {
        float[,] matrix;
        try
        {
            if (layer.Layer < 0 || layer.Layer >= masks.Count) throw new ArgumentException($"importance of layer {layer.Layer}, the model has {masks.Count}");
            var kept = masks[layer.Layer].Kept;
            matrix = layer.Matrix(kept.GetLength(0), kept.GetLength(1));
        }
        catch (ArgumentException e)
        {
            Exclude(members[0].Id, $"it sent malformed importance: {e.Message}");
            return;
        }
        if (importance[layer.Layer] is null) importanceReceived++;
        importance[layer.Layer] = matrix;
        if (importanceReceived < masks.Count) return;

        double progress = CondensingSchedule.Progress(step, plan.TotalSteps);
        (decided, int moved) = ModelCondensing.Decide(masks, progress, options.Model.CondenseFactor, i => importance[i]);
        phase = Phase.Masks;
        SendAll(MaskBroadcast());
        observer.Event($"condensing before step {step} (progress {progress:F4}): {moved} layers to stage {decided.Max(m => m.Stage)}, " +
            $"mask version {maskVersion} decided from importance averaged over {members.Count} workers", EventKind.Condensing);
    }

    ApplyMasks MaskBroadcast() =>
        new(maskVersion, step, decided!.Select(m => m.Stage).ToArray(), decided!.Select(m => MaskWire.Pack(m.Kept)).ToArray());

    void Applied(MasksApplied applied)
    {
        string expected = ModelCondensing.Checksum(decided!);
        if (applied.MaskChecksum != expected)
        {
            Exclude(applied.WorkerId, $"{applied.WorkerId} diverged: its masks after version {applied.MaskVersion} have checksum {applied.MaskChecksum}, " +
                $"the coordinator decided {expected}");
            return;
        }
        checksums.Add((applied.WorkerId, applied.WeightChecksum));
        if (!Complete("weights", step)) return;
        masks = decided!;
        decided = null;
        observer.Event($"mask version {maskVersion} applied on {members.Count} workers (mask checksum {expected}, weights {applied.WeightChecksum})", EventKind.Condensing);
        observer.Masks(maskVersion, step, masks);
        Next();
    }

    void Evaluated()
    {
        var test = Accuracy.Combine(shards);
        lastTest = test;
        observer.Epoch(new EpochMetrics(plan.EpochOf(step - 1), epochLoss / Math.Max(1, epochSamples), epochCorrect / Math.Max(1, epochSamples), test,
            epochClock.Elapsed.TotalSeconds));
        (epochLoss, epochCorrect, epochSamples) = (0, 0, 0);
        epochClock.Restart();
        Next();
    }

    void FetchState()
    {
        phase = Phase.Fetching;
        var (from, at) = (members[0], step);
        Background($"fetching the state of step {at} from {from.Id}", async () => new StateFetched(await states.FetchAsync(from.Endpoint, at)));
    }

    /// <summary>The job's state at a boundary is here: a checkpoint is written while training goes on; the end needs no worker any more.</summary>
    void Fetched(byte[] state)
    {
        long at = step;
        // Writes follow one another, so that the store keeps its newest few in order.
        var writing = checkpointWrites.ContinueWith(_ => store.Save(options, at, writer => writer.Write(state)), TaskScheduler.Default);
        checkpointWrites = writing;
        var requests = checkpointRequests.ToArray();
        checkpointRequests.Clear();
        writing.ContinueWith(written =>
        {
            foreach (var request in requests)
                if (written.IsCompletedSuccessfully) request.TrySetResult((written.Result, at));
                else request.TrySetException(written.Exception!.GetBaseException());
        }, TaskScheduler.Default);
        if (current == Boundary.Checkpoint)
        {
            host.Background(async () => new CheckpointWritten(await writing), error => new CheckpointFailed(error));
            Next();
            return;
        }
        phase = Phase.Finishing;
        observer.Event($"all {members.Count} replicas hold identical weights at step {step} (checksum {agreed})", EventKind.Checkpoint);
        var totals = new RunTotals(step - first, clock.Elapsed.TotalSeconds, stepMs.ToArray(), WorkerTimings());
        string? stopped = schedule.LastStep < plan.TotalSteps
            ? $"stopped after step {schedule.LastStep} of {plan.TotalSteps}; resume with --resume {store.Folder}" : null;
        var test = lastTest;
        Background("finishing the job", async () =>
        {
            await writing;
            using var model = Model(state).to(run.Device);
            return new JobCompleted(TrainingCompletion.Finish(model, options, run, data, totals, test, stopped, observer));
        });
    }

    IReadOnlyList<WorkerTimings> WorkerTimings() =>
        byWorker.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w =>
        {
            var reports = w.Value;
            return new WorkerTimings(w.Key, reports.Count, TrainingCompletion.Median(reports.Select(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs)),
                TrainingCompletion.Median(reports.Select(r => r.ComputeMs)), TrainingCompletion.Median(reports.Select(r => r.AllReduceMs)),
                TrainingCompletion.Median(reports.Select(r => r.DataWaitMs)), reports.MaxBy(r => r.Step)!.AllReduceBytes);
        }).ToArray();

    /// <summary>A worker that cannot or must not go on (it failed, diverged, broke the protocol) leaves the job; the others continue.</summary>
    void Exclude(string workerId, string why)
    {
        if (!Knows(workerId)) return;
        host.Send(workerId, new Excluded(why));
        Lose(workerId, why, gone: false);
    }

    void Lose(string workerId, string why, bool gone)
    {
        if (phase == Phase.Ended || !Knows(workerId)) return;
        joiners.RemoveAll(j => j.Id == workerId);
        members.RemoveAll(m => m.Id == workerId);
        pending.Remove(workerId);
        aborted.Remove(workerId);
        if (gone) host.Down(workerId);
        observer.Worker(new WorkerReport(workerId, gone ? WorkerState.Lost : WorkerState.Excluded, "", 0, "", why));
        observer.Event($"{workerId} {(gone ? "lost" : "excluded")}: {why}", EventKind.Failure);
        if (phase == Phase.WaitingForWorkers) return;
        if (phase == Phase.Finishing) return; // the final state is already here
        if (members.Count == 0)
        {
            Fail($"every worker is lost (the last: {workerId} {why}); resume with --resume {run.OutputFolder} once workers are back");
            return;
        }
        Recover($"the loss of {workerId}");
    }

    /// <summary>
    /// Something broke the ring: every member stops what it runs and says at which whole step it stands; members that
    /// cannot answer are found gone by a probe of their endpoint or by the failure detector, and left out.
    /// </summary>
    void Recover(string cause)
    {
        if (phase != Phase.Recovering)
        {
            interrupted = phase;
            phase = Phase.Recovering;
            attempt++;
            rejoinClock.Restart();
            rejoinReason = $"recovered from {cause}";
            recovering = true;
            observer.Event($"recovering from {cause}: stopping the steps of {string.Join(", ", members.Select(m => m.Id))}", EventKind.Recovery);
            pending.Clear();
            checksums.Clear();
            aborted.Clear();
            foreach (var m in members) Send(m.Id, new AbortSteps(generation));
            Probe(TimeSpan.Zero);
        }
        if (pending.Count == 0) Replan();
    }

    void Probe(TimeSpan after)
    {
        var waiting = members.Where(m => pending.Contains(m.Id)).ToArray();
        Background("probing the workers", async () =>
        {
            await Task.Delay(after);
            var gone = await Task.WhenAll(waiting.Select(async m => (m.Id, Gone: await states.GoneAsync(m.Endpoint))));
            return new WorkersGone(gone.Where(g => g.Gone).Select(g => g.Id).ToArray());
        });
    }

    /// <summary>
    /// Every survivor stands idle at a whole step, the furthest ones one step ahead at most (a step completes on one
    /// replica only once all have sent their gradients). The job continues from the furthest: the others copy that state,
    /// the in-flight step is redone under the same micro-batch plan, and what the loss interrupted is done again.
    /// </summary>
    void Replan()
    {
        long furthest = aborted.Values.Max();
        var source = members.First(m => aborted[m.Id] == furthest);
        var behind = members.Where(m => aborted[m.Id] < furthest).Select(m => m.Id).ToArray();
        // Steps some survivor completed count with the reports there are; reports of steps to be redone are dropped.
        foreach (var (reported, reports) in stepReports.OrderBy(r => r.Key).ToArray())
        {
            stepReports.Remove(reported);
            if (reported < furthest) StepCompleted(reported, reports);
        }
        // What follows the new ring: the start (Formed starts a job that had not), the interrupted segment from where it
        // stands, or the interrupted boundary again; a ring that was being formed already has its plan queued.
        if (interrupted == Phase.LoadingState) beginAgain = true;
        else if (interrupted == Phase.Running && furthest > runFrom) PlanBoundaries(furthest);
        else if (interrupted == Phase.Running) boundaries.Insert(0, Boundary.Run);
        else if (started && interrupted != Phase.Joining) boundaries.Insert(0, current);
        string redo = interrupted == Phase.Running && furthest < runTo ? $"step {furthest} is redone" : "no step is redone";
        step = furthest;
        Admit();
        observer.Event($"re-planned after {rejoinClock.Elapsed.TotalSeconds:F2} s: {members.Count} workers continue from step {furthest}, {redo}" +
            (behind.Length > 0 ? $"; {string.Join(", ", behind)} copy the state of step {furthest} from {source.Id}" : ""), EventKind.Recovery);
        FormRing(new StateSource(source.Endpoint, furthest), rejoinReason!);
    }

    /// <summary>Makes the waiting workers members; members stay ordered by name, which is their rank, whoever registered first.</summary>
    string[] Admit()
    {
        var admitted = joiners.Select(j => j.Id).ToArray();
        members.AddRange(joiners);
        joiners.Clear();
        members.Sort((a, b) => string.CompareOrdinal(a.Id, b.Id));
        return admitted;
    }

    static WorkerReport Describe(Member member, WorkerState state) => new(member.Id, state, member.Device, member.Threads, member.Endpoint);

    void Report(Member member, WorkerState state) => observer.Worker(Describe(member, state));

    void Background(string what, Func<Task<object>> work)
    {
        int at = attempt;
        host.Background(async () => new WorkDone(at, await work()), error => new WorkFailed(at, what, error));
    }

    /// <summary>Is the reply expected in this phase from a worker still pending? Removes it from the pending set.</summary>
    bool Expect(Phase expected, string workerId) => phase == expected && pending.Remove(workerId);

    /// <summary>When every worker has answered: true if their weight checksums agree (see <see cref="Agree"/>).</summary>
    bool Complete(string what, long atStep)
    {
        if (pending.Count > 0 || checksums.Count < members.Count) return false;
        var reports = checksums.ToList();
        checksums.Clear();
        if (!Agree(what, atStep, reports)) return false;
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

    void Send(string workerId, object message)
    {
        pending.Add(workerId);
        host.Send(workerId, message);
    }

    void SendAll(object message)
    {
        checksums.Clear();
        foreach (var m in members) Send(m.Id, message);
    }

    void Fail(string error)
    {
        observer.Event($"error: {error}", EventKind.Failure);
        End(1, error);
    }

    void End(int code, string reason)
    {
        phase = Phase.Ended;
        foreach (var m in members.Concat(joiners))
        {
            host.Send(m.Id, new JobEnded(reason));
            Report(m, WorkerState.Finished);
        }
        foreach (var request in checkpointRequests) request.TrySetException(new InvalidOperationException($"the job ended before the checkpoint: {reason}"));
        checkpointRequests.Clear();
        host.Ended(code, reason);
    }
}
