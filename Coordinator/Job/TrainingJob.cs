using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;

namespace CondenseCluster.Coordinator.Job;

/// <summary>What the job needs from around it; the coordinator actor provides it.</summary>
public interface IJobHost
{
    void Send(string workerId, object message);

    /// <summary>Runs <paramref name="work"/> off the actor; its result, or a <see cref="BackgroundFailed"/>, comes back to <see cref="TrainingJob.Handle"/>.</summary>
    void Background(string what, Func<Task<object>> work);

    /// <summary>The job is over (0: completed, 1: failed, 130: interrupted); workers have been told.</summary>
    void Ended(int exitCode);
}

/// <summary>Moves whole replica states to and from workers' state services.</summary>
public interface IReplicaStates
{
    Task<byte[]> FetchAsync(string endpoint, long step);
    Task<string> LoadAsync(string endpoint, long step, byte[] state);
}

public sealed record BackgroundFailed(string What, string Error);
sealed record StatesLoaded(IReadOnlyList<(string Worker, string Checksum)> Checksums);
sealed record CheckpointWritten(string Path);
sealed record JobCompleted(TrainingSummary Summary);

/// <summary>
/// The coordinator's job state machine (DESIGN.md §2). Workers run the steps between boundaries on their own; at each
/// boundary the job evaluates (sharded), checkpoints (BatchNorm averaged, state fetched from rank 0) and condenses
/// (importance averaged by the workers, masks decided here, broadcast with a version, acknowledged with checksums).
/// Replicas are checked for agreement at every report that carries a checksum.
/// </summary>
public sealed class TrainingJob
{
    enum Phase { WaitingForWorkers, Joining, LoadingState, Running, Importance, Masks, Evaluating, PreparingState, Background, Ended }
    enum Boundary { Condense, Evaluate, Checkpoint, Run, Finish }

    sealed record Member(string Id, string Endpoint, string Device, int Threads);

    readonly TrainingOptions options;
    readonly RunSettings run;
    readonly (IImageDataset Train, IImageDataset Test) data;
    readonly MicroBatchPlan plan;
    readonly JobSchedule schedule;
    readonly ITrainingObserver observer;
    readonly IJobHost host;
    readonly IReplicaStates states;
    readonly CheckpointStore store;
    readonly ClusterSettings cluster;
    readonly (int Groups, int InChannels)[] layers;
    readonly (long Step, byte[] State)? resume;
    readonly List<Member> members = [];
    readonly Queue<Boundary> boundaries = new();
    readonly HashSet<string> pending = [];
    readonly List<(string Worker, string Checksum)> checksums = [];
    readonly List<Accuracy> shards = [];
    readonly Dictionary<long, List<StepReport>> stepReports = [];
    readonly Dictionary<string, List<StepReport>> byWorker = [];
    readonly List<double> stepMs = [];
    readonly Stopwatch clock = new(), epochClock = new();
    Phase phase = Phase.WaitingForWorkers;
    Boundary current;
    long step, first;
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
        plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, data.Train.Count, options.Epochs);
        plan.Validate();
        schedule = new JobSchedule(plan, options.Model.CondenseFactor, options.CheckpointEverySteps,
            Math.Min(plan.TotalSteps, run.StopAfterStep ?? plan.TotalSteps));
        store = new CheckpointStore(Path.Combine(run.OutputFolder, "checkpoints"));
        // The coordinator decides masks, so it keeps them: read from a model of the job's shape (and the resumed state).
        using var mirror = new CondenseNet(options.Model);
        if (resumeFrom is not null)
        {
            var state = resumeFrom.ReadState();
            using (var reader = new BinaryReader(new MemoryStream(state))) mirror.load(reader, strict: true);
            resume = (resumeFrom.Header.Step, state);
            step = first = resumeFrom.Header.Step;
        }
        layers = mirror.LearnedLayers.Select(l => (l.Layer.Groups, l.Layer.InChannels)).ToArray();
        masks = ModelCondensing.Masks(mirror);
    }

    public long MaskVersion => maskVersion;
    public IReadOnlyList<LayerMask> Masks => masks;

    /// <summary>A worker offered itself; the job starts once enough have.</summary>
    public void WorkerRegistered(RegisterWorker worker)
    {
        host.Send(worker.WorkerId, new WorkerAccepted(worker.WorkerId));
        if (phase != Phase.WaitingForWorkers || members.Any(m => m.Id == worker.WorkerId)) return;
        members.Add(new Member(worker.WorkerId, worker.DataEndpoint, worker.Device, worker.Threads));
        observer.Event($"{worker.WorkerId} registered ({worker.Device}, {worker.Threads} threads, data plane {worker.DataEndpoint}); " +
            $"{members.Count} of {cluster.ExpectedWorkers} workers");
        if (members.Count == cluster.ExpectedWorkers) Join();
    }

    /// <summary>The user stopped the job (Ctrl+C): workers are told, the last checkpoint stays the place to resume from.</summary>
    public void Interrupt()
    {
        if (phase == Phase.Ended) return;
        observer.Event($"interrupted at step {step}; resume with --resume {run.OutputFolder}");
        End(130, "the coordinator was interrupted");
    }

    /// <summary>A worker left the cluster or its process ended.</summary>
    public void WorkerLost(string workerId, string why)
    {
        if (phase == Phase.Ended || members.All(m => m.Id != workerId)) return;
        Fail($"{workerId} {why}");
    }

    public void Handle(object message)
    {
        if (phase == Phase.Ended) return;
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
            case WorkerFailed failed: Fail($"{failed.WorkerId} failed: {NameEndpoints(failed.Error)}"); break;
            case BackgroundFailed failed: Fail($"{failed.What} failed: {failed.Error}"); break;
            case ReplicaReady ready when Expect(Phase.Joining, ready.WorkerId):
                checksums.Add((ready.WorkerId, ready.WeightChecksum));
                if (Complete("initial weights", step)) Started();
                break;
            case StatesLoaded loaded when phase == Phase.LoadingState:
                checksums.AddRange(loaded.Checksums);
                if (Complete("resumed weights", step)) Boundaries(step);
                break;
            case StepReport report when phase == Phase.Running: Record(report); break;
            case StepsDone done when Expect(Phase.Running, done.WorkerId):
                checksums.Add((done.WorkerId, done.WeightChecksum));
                if (Complete("weights", done.Step)) Boundaries(step = done.Step);
                break;
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
            case CheckpointWritten written when phase == Phase.Background:
                observer.Event($"checkpoint {written.Path}");
                Next();
                break;
            case JobCompleted when phase == Phase.Background: End(0, "the job completed"); break;
            default: observer.Event($"ignored an unexpected {message.GetType().Name} in phase {phase}"); break;
        }
    }

    /// <summary>A worker's data-plane error names its peers by endpoint; say which worker each one is.</summary>
    string NameEndpoints(string error) =>
        members.Aggregate(error, (text, m) => text.Replace($"({m.Endpoint})", $"({m.Id} at {m.Endpoint})"));

    void Join()
    {
        phase = Phase.Joining;
        members.Sort((a, b) => string.CompareOrdinal(a.Id, b.Id)); // ranks independent of who registered first
        observer.Event($"cluster formed: {string.Join(", ", members.Select((m, rank) => $"{m.Id} (rank {rank})"))}");
        string json = JsonSerializer.Serialize(options);
        var endpoints = members.Select(m => m.Endpoint).ToArray();
        for (int rank = 0; rank < members.Count; rank++)
            Send(members[rank].Id, new JoinJob(json, rank, endpoints, RingGeneration: 1, cluster.ChecksumEvery, cluster.BucketFloats));
    }

    void Started()
    {
        clock.Start();
        epochClock.Start();
        observer.Started(new RunStarted($"{options.Arch} on {data.Train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, $"{members.Count} workers ({string.Join(", ", members.Select(m => m.Device).Distinct())})",
            members.Min(m => m.Threads), run.Allocator, run.OutputFolder));
        if (resume is not { } state)
        {
            Boundaries(step);
            return;
        }
        phase = Phase.LoadingState;
        var targets = members.ToArray();
        host.Background("loading the resumed state into the workers", async () =>
        {
            var loaded = await Task.WhenAll(targets.Select(async m => (m.Id, await states.LoadAsync(m.Endpoint, state.Step, state.State))));
            return new StatesLoaded(loaded);
        });
        observer.Event($"resuming at step {state.Step}: loading the checkpoint's state into {targets.Length} workers");
    }

    /// <summary>Plans what happens at step <paramref name="at"/> before the steps after it run.</summary>
    void Boundaries(long at)
    {
        if (at > first || at == schedule.LastStep)
        {
            if (schedule.EpochEndsAt(at)) boundaries.Enqueue(Boundary.Evaluate);
            if (schedule.CheckpointAt(at) && at < schedule.LastStep) boundaries.Enqueue(Boundary.Checkpoint);
        }
        if (at == schedule.LastStep) boundaries.Enqueue(Boundary.Finish);
        else
        {
            if (MasksBehind(at)) boundaries.Enqueue(Boundary.Condense);
            boundaries.Enqueue(Boundary.Run);
        }
        Next();
    }

    bool MasksBehind(long at) =>
        masks.Any(m => CondensingSchedule.NextStage(m.Stage, CondensingSchedule.Progress(at, plan.TotalSteps), options.Model.CondenseFactor) is not null);

    void Next()
    {
        switch (current = boundaries.Dequeue())
        {
            case Boundary.Run:
                phase = Phase.Running;
                long to = schedule.NextBoundary(step);
                SendAll(new RunSteps(step, to));
                break;
            case Boundary.Condense:
                phase = Phase.Importance;
                maskVersion++;
                importance = new float[layers.Length][,];
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
        if (!stepReports.TryGetValue(report.Step, out var reports)) stepReports[report.Step] = reports = [];
        reports.Add(report);
        if (!byWorker.TryGetValue(report.WorkerId, out var mine)) byWorker[report.WorkerId] = mine = [];
        mine.Add(report);
        if (reports.Count < members.Count) return;
        stepReports.Remove(report.Step);
        var withChecksums = reports.Where(r => r.WeightChecksum is not null).Select(r => (r.WorkerId, r.WeightChecksum!)).ToList();
        if (withChecksums.Count == members.Count && ReplicaAgreement.Describe("weights", report.Step + 1, withChecksums) is string divergence)
        {
            Fail(divergence);
            return;
        }
        double loss = reports.Sum(r => r.LossSum), correct = reports.Sum(r => r.Correct), samples = reports.Sum(r => r.Samples);
        double ms = reports.Max(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs);
        stepMs.Add(ms);
        (epochLoss, epochCorrect, epochSamples) = (epochLoss + loss, epochCorrect + correct, epochSamples + samples);
        int stage = masks.Max(m => m.Stage);
        observer.Step(new StepMetrics(report.Step, plan.EpochOf(report.Step), loss / samples, correct / samples,
            LearningRate.Cosine(options.LearningRate, report.Step, plan.TotalSteps), stage, options.Model.CondenseFactor - 1,
            samples / (ms / 1000), reports.Max(r => r.ComputeMs), reports.Max(r => r.DataWaitMs)));
    }

    void Importance(LayerImportance layer)
    {
        var (groups, inputs) = layers[layer.Layer];
        float[,] matrix;
        try { matrix = layer.Matrix(groups, inputs); }
        catch (ArgumentException e)
        {
            Fail(e.Message);
            return;
        }
        if (importance[layer.Layer] is null) importanceReceived++;
        importance[layer.Layer] = matrix;
        if (importanceReceived < layers.Length) return;

        double progress = CondensingSchedule.Progress(step, plan.TotalSteps);
        (decided, int moved) = ModelCondensing.Decide(masks, progress, options.Model.CondenseFactor, i => importance[i]);
        phase = Phase.Masks;
        SendAll(new ApplyMasks(maskVersion, step, decided.Select(m => m.Stage).ToArray(), decided.Select(m => ModelCondensing.Pack(m.Kept)).ToArray()));
        observer.Event($"condensing before step {step} (progress {progress:F4}): {moved} layers to stage {decided.Max(m => m.Stage)}, " +
            $"mask version {maskVersion} decided from importance averaged over {members.Count} workers");
    }

    void Applied(MasksApplied applied)
    {
        string expected = ModelCondensing.Checksum(decided!);
        if (applied.MaskChecksum != expected)
        {
            Fail($"{applied.WorkerId} diverged: its masks after version {applied.MaskVersion} have checksum {applied.MaskChecksum}, the coordinator decided {expected}");
            return;
        }
        checksums.Add((applied.WorkerId, applied.WeightChecksum));
        if (!Complete("weights", step)) return;
        masks = decided!;
        observer.Event($"mask version {maskVersion} applied on {members.Count} workers (mask checksum {expected}, weights {applied.WeightChecksum})");
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
        phase = Phase.Background;
        var (from, at) = (members[0], step);
        if (current == Boundary.Checkpoint)
        {
            host.Background($"checkpoint at step {at}", async () =>
            {
                byte[] state = await states.FetchAsync(from.Endpoint, at);
                return new CheckpointWritten(store.Save(options, at, writer => writer.Write(state)));
            });
            return;
        }
        observer.Event($"all {members.Count} replicas hold identical weights at step {step} (checksum {agreed})");
        var totals = new RunTotals(step - first, clock.Elapsed.TotalSeconds, stepMs.ToArray(), WorkerTimings());
        string? stopped = schedule.LastStep < plan.TotalSteps
            ? $"stopped after step {schedule.LastStep} of {plan.TotalSteps}; resume with --resume {store.Folder}" : null;
        var test = lastTest;
        host.Background("finishing the job", async () =>
        {
            byte[] state = await states.FetchAsync(from.Endpoint, at);
            store.Save(options, at, writer => writer.Write(state));
            using var model = new CondenseNet(options.Model).to(run.Device);
            using (var reader = new BinaryReader(new MemoryStream(state))) model.load(reader, strict: true);
            return new JobCompleted(TrainingCompletion.Finish(model, options, run, data, totals, test, stopped, observer));
        });
    }

    IReadOnlyList<WorkerTimings> WorkerTimings() =>
        members.Where(m => byWorker.ContainsKey(m.Id)).Select(m =>
        {
            var reports = byWorker[m.Id];
            return new WorkerTimings(m.Id, reports.Count, TrainingCompletion.Median(reports.Select(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs)),
                TrainingCompletion.Median(reports.Select(r => r.ComputeMs)), TrainingCompletion.Median(reports.Select(r => r.AllReduceMs)),
                TrainingCompletion.Median(reports.Select(r => r.DataWaitMs)));
        }).ToArray();

    /// <summary>Is the reply expected in this phase from a worker still pending? Removes it from the pending set.</summary>
    bool Expect(Phase expected, string workerId) => phase == expected && pending.Remove(workerId);

    /// <summary>When every worker has answered: true if their weight checksums agree, else the job fails naming the diverging ones.</summary>
    bool Complete(string what, long atStep)
    {
        if (pending.Count > 0 || checksums.Count < members.Count) return false;
        string? divergence = ReplicaAgreement.Describe(what, atStep, checksums);
        agreed = checksums[0].Checksum;
        checksums.Clear();
        if (divergence is null) return true;
        Fail(divergence);
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
        observer.Event($"error: {error}");
        End(1, error);
    }

    void End(int code, string reason)
    {
        phase = Phase.Ended;
        foreach (var m in members) host.Send(m.Id, new JobEnded(reason));
        host.Ended(code);
    }
}
