using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Worker;

/// <summary>
/// How this worker runs its replica; none of it changes the result. <paramref name="DataDir"/> overrides where the
/// job's dataset lies on this machine.
/// </summary>
sealed record ReplicaSettings(string WorkerId, Device Device, int LoaderThreads, int EvalBatchSize, string? DataDir = null, FaultInjection? Fault = null);

/// <summary>
/// One worker's model replica in a distributed job (DESIGN.md §2). It runs the steps the coordinator hands it on its
/// own through its <see cref="DistributedStep"/>: its micro-batches of the fixed plan, gradients summed with its
/// peers over the data plane's ring, the same update as every other replica. All tensor work happens on one thread,
/// in the order commands arrive, so collective operations (each all-reduce) line up across workers without locks.
/// </summary>
sealed class Replica : IAsyncDisposable
{
    readonly ReplicaSettings settings;
    readonly DataPlaneNode dataPlane;
    readonly BlockingCollection<Action> commands = new();
    readonly Thread thread;
    readonly ReplicaStateClient peers = new();
    TrainingOptions? options;
    string? jobKey;
    TrainingEngine? engine;
    MicroBatchPlan? plan;
    (IImageDataset Train, IImageDataset Test)? data;
    int rank, size = 1, checksumEvery;
    long step;                  // global steps this replica has completed
    long generation = -1;       // of the ring this replica is a member of
    long yieldGeneration = -1;  // a Yield asked for in this generation ends the running segment
    DistributedStep? distributed; // this replica's steps on the current ring

    public Replica(ReplicaSettings settings, DataPlaneNode dataPlane)
    {
        this.settings = settings;
        this.dataPlane = dataPlane;
        thread = new Thread(() => { foreach (var command in commands.GetConsumingEnumerable()) command(); }) { Name = "replica", IsBackground = true };
        thread.Start();
    }

    /// <summary>Runs <paramref name="command"/> on the replica thread; its task ends with the command.</summary>
    public Task<T> Run<T>(Func<T> command)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        commands.Add(() =>
        {
            try { done.SetResult(command()); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task;
    }

    TrainingEngine Engine => engine ?? throw new InvalidOperationException("this worker has not joined a job yet");

    DistributedStep Distributed => distributed ?? throw new InvalidOperationException("this worker has not joined a job yet");

    /// <summary>The global steps this replica has completed; any thread.</summary>
    public long Step => Interlocked.Read(ref step);

    /// <summary>The job this replica holds and its step, for a coordinator that restarted; any thread.</summary>
    public HeldReplica? Held => Volatile.Read(ref jobKey) is string key ? new HeldReplica(key, Step) : null;

    /// <summary>A ring connection ended unasked (<see cref="DataPlaneNode.NeighbourLost"/>): the generation and why; raised on a ring thread.</summary>
    public event Action<long, AllReduceException> NeighbourLost
    {
        add => dataPlane.NeighbourLost += value;
        remove => dataPlane.NeighbourLost -= value;
    }

    /// <summary>The ring generation this replica is a member of (-1: none yet); any thread.</summary>
    public long Generation => Interlocked.Read(ref generation);

    /// <summary>
    /// Builds the replica for the job (initial weights from the job's seed) or keeps the one it holds, takes its place
    /// in the ring, and, when it does not stand at the step the job continues from, copies the whole state from a peer.
    /// </summary>
    public ReplicaReady Join(JoinJob job, Action<string> log)
    {
        var jobOptions = JsonSerializer.Deserialize<TrainingOptions>(job.OptionsJson)
            ?? throw new ArgumentException("the job configuration is empty");
        string key = job.JobKey;
        if (engine is null || jobKey != key)
        {
            engine?.Dispose();
            engine = null;
            jobKey = null;
            jobOptions.Validate();
            if (data is null || options?.Dataset != jobOptions.Dataset || options?.DataDir != jobOptions.DataDir || data.Value.Train.Size != jobOptions.Model.InputSize)
                data = Datasets.Open(jobOptions.Dataset, settings.DataDir ?? jobOptions.DataDir, log, jobOptions.Model.InputSize);
            Datasets.CheckFits(data.Value.Train, jobOptions.Model);
            plan = new MicroBatchPlan(jobOptions.BatchSize, jobOptions.MicroBatches, data.Value.Train.Count, jobOptions.Epochs);
            plan.Validate();
            engine = new TrainingEngine(jobOptions, settings.Device);
            options = jobOptions;
            Interlocked.Exchange(ref step, 0);
        }
        (rank, size, checksumEvery) = (job.Rank, job.Members, Math.Max(1, job.ChecksumEvery));
        dataPlane.ConfigureRing(job.Rank, job.Members, job.Layout, job.RingGeneration);
        if (job.Layout.Hierarchical) log($"ring generation {job.RingGeneration}: {job.Layout}");
        Interlocked.Exchange(ref generation, job.RingGeneration);
        distributed?.Dispose();
        distributed = new DistributedStep(Engine, plan!, dataPlane, new GradientExchange(job.BucketFloats, job.SendMaskedGradients, job.GradientPrecision))
        {
            Computed = s => settings.Fault?.At(FaultPoint.Compute, s),
            Exchanging = s => settings.Fault?.At(FaultPoint.AllReduce, s),
        };
        string checksum;
        if (job.From is { } source && source.Step != step)
        {
            log($"copying the job's state at step {source.Step} from {source.Endpoint} (this replica is at step {step})");
            checksum = Load(peers.FetchAsync(source.Endpoint, source.Step).GetAwaiter().GetResult(), source.Step);
        }
        else checksum = ReplicaChecksum.Weights(Engine);
        jobKey = key;
        return new ReplicaReady(settings.WorkerId, step, checksum);
    }

    /// <summary>
    /// Called off the replica thread: cuts what runs on ring generation <paramref name="ringGeneration"/> (an all-reduce
    /// in flight fails at once, a step being computed fails at its all-reduce), so the replica soon stands idle at a
    /// whole step. Orders for an older generation are stale and ignored.
    /// </summary>
    public void Abort(long ringGeneration)
    {
        if (ringGeneration == Generation) dataPlane.Abort();
    }

    /// <summary>Called off the replica thread: ends the running segment after the next step all replicas of the generation agree on.</summary>
    public void Yield(long ringGeneration) => Interlocked.Exchange(ref yieldGeneration, ringGeneration);

    /// <summary>Replaces the whole state (a resumed job); the replica then stands at <paramref name="atStep"/>.</summary>
    public string Load(byte[] state, long atStep)
    {
        using var reader = new BinaryReader(new MemoryStream(state));
        Engine.LoadState(reader);
        Distributed.StateLoaded();
        Interlocked.Exchange(ref step, atStep);
        return ReplicaChecksum.Weights(Engine);
    }

    /// <summary>The whole state (<see cref="TrainingEngine.SaveState"/>), which must stand at <paramref name="atStep"/>.</summary>
    public byte[] Save(long atStep)
    {
        if (atStep != step) throw new InvalidOperationException($"the state asked for is at step {atStep}, this replica is at step {step}");
        settings.Fault?.At(FaultPoint.Checkpoint, atStep);
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer)) Engine.SaveState(writer);
        return buffer.ToArray();
    }

    /// <summary>
    /// Runs global steps [from, to), reporting each; returns the weight checksum at the end. A <see cref="Yield"/> ends
    /// the segment early, after a step on which every replica agrees through a flag summed with the gradients.
    /// </summary>
    public StepsDone RunSteps(RunSteps segment, Action<StepReport> report)
    {
        var (engine, distributed) = (Engine, Distributed);
        var (jobOptions, jobPlan, train) = (options!, plan!, data!.Value.Train);
        if (segment.From != step) throw new InvalidOperationException($"asked to run from step {segment.From}, this replica is at step {step}");
        using var prefetcher = new BatchPrefetcher(train, jobPlan.Requests(segment.From, segment.To, jobOptions.Seed, rank, size), jobOptions.Seed,
            settings.LoaderThreads, capacity: Math.Max(2, 2 * distributed.MicroBatches.Count));
        string? checksum = null; // of the last step run, when it was due
        for (long s = segment.From; s < segment.To; s++)
        {
            long sentBefore = dataPlane.BytesSent;
            var outcome = distributed.Run(s, prefetcher, train, LearningRate.At(jobOptions, jobPlan, s),
                stopAfterThisStep: () => Interlocked.Read(ref yieldGeneration) == generation);
            Interlocked.Exchange(ref step, s + 1);
            checksum = step % checksumEvery == 0 ? ReplicaChecksum.Weights(engine) : null;
            var (loss, correct, samples) = outcome.Total;
            report(new StepReport(settings.WorkerId, s, loss, correct, samples, outcome.ComputeMs, outcome.ExchangeWaitMs, outcome.DataWaitMs, checksum,
                dataPlane.BytesSent - sentBefore, outcome.UpdateSkipped, ProcessMemory.Read().Resident));
            if (outcome.Stop)
            {
                Interlocked.Exchange(ref yieldGeneration, -1);
                break;
            }
        }
        return new StepsDone(settings.WorkerId, step, checksum ?? ReplicaChecksum.Weights(engine));
    }

    /// <summary>Per-layer importance averaged over the ring; every rank takes part, rank 0 returns it for the coordinator.</summary>
    public IReadOnlyList<LayerImportance> AverageImportance(long maskVersion)
    {
        var importance = Distributed.AverageImportance();
        return rank != 0 ? [] : importance.Select((matrix, i) => MaskWire.Importance(maskVersion, i, matrix)).ToArray();
    }

    /// <summary>Installs the coordinator's masks and answers with checksums of masks and weights.</summary>
    public MasksApplied ApplyMasks(ApplyMasks masks)
    {
        settings.Fault?.At(FaultPoint.Masks, masks.MaskVersion);
        var model = Engine.Model;
        var layers = model.LearnedLayers.Select(l => l.Layer).ToArray();
        if (masks.Stages.Count != layers.Length || masks.KeptColumns.Count != layers.Length)
            throw new ArgumentException($"mask version {masks.MaskVersion} has {masks.KeptColumns.Count} layers, this model {layers.Length}");
        Engine.InstallMasks(layers.Select((l, i) =>
            new LayerMask(masks.Stages[i], MaskWire.Unpack(masks.KeptColumns[i], l.Groups, l.InChannels))).ToArray());
        Distributed.MasksChanged();
        return new MasksApplied(settings.WorkerId, masks.MaskVersion, ModelCondensing.Checksum(ModelCondensing.Masks(model)), ReplicaChecksum.Weights(Engine));
    }

    /// <summary>Evaluates this worker's contiguous shard of the test set (after averaging BatchNorm statistics).</summary>
    public ShardEvaluated EvaluateShard(long atStep)
    {
        Distributed.AverageBatchNorm(step);
        var test = data!.Value.Test;
        int from = (int)((long)test.Count * rank / size), to = (int)((long)test.Count * (rank + 1) / size);
        var accuracy = Evaluation.Run(Engine.Model, test, settings.Device, settings.EvalBatchSize, settings.LoaderThreads,
            Enumerable.Range(from, to - from).ToArray());
        return new ShardEvaluated(settings.WorkerId, atStep, accuracy.Top1, accuracy.Top5, accuracy.Loss, accuracy.Samples);
    }

    /// <summary>Averages BatchNorm statistics so the state the coordinator fetches is the job's, not this replica's.</summary>
    public StatePrepared PrepareState(long atStep)
    {
        Distributed.AverageBatchNorm(step);
        return new StatePrepared(settings.WorkerId, atStep, ReplicaChecksum.Weights(Engine));
    }

    public async ValueTask DisposeAsync()
    {
        commands.CompleteAdding();
        dataPlane.Abort(); // a command blocked in an all-reduce ends now
        thread.Join();
        distributed?.Dispose();
        engine?.Dispose();
        peers.Dispose();
        await dataPlane.DisposeAsync();
    }
}
