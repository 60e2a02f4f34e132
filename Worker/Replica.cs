using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Worker;

/// <summary>How this worker runs its replica; none of it changes the result.</summary>
sealed record ReplicaSettings(string WorkerId, Device Device, int LoaderThreads, int EvalBatchSize);

/// <summary>
/// One worker's model replica in a distributed job (DESIGN.md §2). It runs the steps the coordinator hands it on its
/// own: its micro-batches of the fixed plan, gradients summed with its peers over the gRPC ring, the same update as
/// every other replica. All tensor work happens on one thread, in the order commands arrive, so collective operations
/// (each all-reduce) line up across workers without locks.
/// </summary>
sealed class Replica : IAsyncDisposable
{
    readonly ReplicaSettings settings;
    readonly DataPlaneNode dataPlane;
    readonly BlockingCollection<Action> commands = new();
    readonly Thread thread;
    TrainingOptions? options;
    TrainingEngine? engine;
    MicroBatchPlan? plan;
    (IImageDataset Train, IImageDataset Test)? data;
    int rank, size = 1, checksumEvery;
    long bucketFloats;
    long step;                  // global steps this replica has completed
    long batchNormAveragedAt = -1;
    long operation;             // all-reduce sequence number, the same on every rank of a ring generation
    float[] gradients = [];

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

    /// <summary>Builds the replica for the job (initial weights from the job's seed) and takes its place in the ring.</summary>
    public ReplicaReady Join(JoinJob job, Action<string> log)
    {
        var jobOptions = JsonSerializer.Deserialize<TrainingOptions>(job.OptionsJson)
            ?? throw new ArgumentException("the job configuration is empty");
        if (engine is null || options != jobOptions)
        {
            engine?.Dispose();
            jobOptions.Validate();
            if (data is null || options?.Dataset != jobOptions.Dataset || options?.DataDir != jobOptions.DataDir)
                data = Datasets.Open(jobOptions.Dataset, jobOptions.DataDir, log);
            Datasets.CheckFits(data.Value.Train, jobOptions.Model);
            plan = new MicroBatchPlan(jobOptions.BatchSize, jobOptions.MicroBatches, data.Value.Train.Count, jobOptions.Epochs);
            plan.Validate();
            engine = new TrainingEngine(jobOptions, settings.Device);
            gradients = new float[engine.Gradients.Length];
            options = jobOptions;
            step = 0;
        }
        (rank, size, checksumEvery, bucketFloats, operation) = (job.Rank, job.Endpoints.Count, Math.Max(1, job.ChecksumEvery), job.BucketFloats, 0);
        dataPlane.ConfigureRing(job.Rank, job.Endpoints, job.RingGeneration);
        batchNormAveragedAt = -1;
        return new ReplicaReady(settings.WorkerId, step, ReplicaChecksum.Weights(Engine.Model));
    }

    /// <summary>Replaces the whole state (a resumed job); the replica then stands at <paramref name="atStep"/>.</summary>
    public string Load(byte[] state, long atStep)
    {
        using var reader = new BinaryReader(new MemoryStream(state));
        Engine.LoadState(reader);
        step = atStep;
        batchNormAveragedAt = -1;
        return ReplicaChecksum.Weights(Engine.Model);
    }

    /// <summary>The whole state (<see cref="TrainingEngine.SaveState"/>), which must stand at <paramref name="atStep"/>.</summary>
    public byte[] Save(long atStep)
    {
        if (atStep != step) throw new InvalidOperationException($"the state asked for is at step {atStep}, this replica is at step {step}");
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer)) Engine.SaveState(writer);
        return buffer.ToArray();
    }

    /// <summary>Runs global steps [from, to), reporting each; returns the weight checksum at the end.</summary>
    public StepsDone RunSteps(RunSteps segment, Action<StepReport> report)
    {
        var engine = Engine;
        var (jobOptions, jobPlan, train) = (options!, plan!, data!.Value.Train);
        if (segment.From != step) throw new InvalidOperationException($"asked to run from step {segment.From}, this replica is at step {step}");
        var mine = jobPlan.MicroBatchesOf(rank, size).ToArray();
        using var prefetcher = new BatchPrefetcher(train, jobPlan.Requests(segment.From, segment.To, jobOptions.Seed, rank, size), jobOptions.Seed,
            settings.LoaderThreads, capacity: Math.Max(2, 2 * mine.Length));
        string? checksum = null; // of the last step run, when it was due
        for (long s = segment.From; s < segment.To; s++)
        {
            var clock = Stopwatch.StartNew();
            engine.BeginStep();
            var ((loss, correct, samples), dataWait) = engine.AccumulateAll(s, mine, prefetcher, train);
            double computed = clock.Elapsed.TotalMilliseconds;
            BucketedAllReduce.Run(engine.Gradients.Flat, gradients, bucketFloats, bucket => dataPlane.AllReduceAsync(bucket, ++operation));
            double reduced = clock.Elapsed.TotalMilliseconds;
            engine.ApplyUpdate(LearningRate.Cosine(jobOptions.LearningRate, s, jobPlan.TotalSteps));
            step = s + 1;
            checksum = step % checksumEvery == 0 ? ReplicaChecksum.Weights(engine.Model) : null;
            report(new StepReport(settings.WorkerId, s, loss, correct, samples, computed - dataWait + (clock.Elapsed.TotalMilliseconds - reduced),
                reduced - computed, dataWait, checksum));
        }
        batchNormAveragedAt = -1;
        return new StepsDone(settings.WorkerId, step, checksum ?? ReplicaChecksum.Weights(engine.Model));
    }

    /// <summary>Per-layer importance averaged over the ring; every rank takes part, rank 0 returns it for the coordinator.</summary>
    public IReadOnlyList<LayerImportance> AverageImportance(long maskVersion)
    {
        var importance = Engine.Model.LearnedLayers.Select(l => l.Layer.Importance()).ToArray();
        var buffer = new float[importance.Sum(i => i.Length)];
        int offset = 0;
        foreach (var matrix in importance)
        {
            Buffer.BlockCopy(matrix, 0, buffer, offset * sizeof(float), Buffer.ByteLength(matrix));
            offset += matrix.Length;
        }
        AllReduce(buffer);
        if (rank != 0) return [];
        foreach (ref float value in buffer.AsSpan()) value /= size;
        offset = 0;
        foreach (var matrix in importance)
        {
            Buffer.BlockCopy(buffer, offset * sizeof(float), matrix, 0, Buffer.ByteLength(matrix));
            offset += matrix.Length;
        }
        return importance.Select((matrix, i) => LayerImportance.Of(maskVersion, i, matrix)).ToArray();
    }

    /// <summary>Installs the coordinator's masks and answers with checksums of masks and weights.</summary>
    public MasksApplied ApplyMasks(ApplyMasks masks)
    {
        var model = Engine.Model;
        var layers = model.LearnedLayers.Select(l => l.Layer).ToArray();
        if (masks.Stages.Count != layers.Length || masks.KeptColumns.Count != layers.Length)
            throw new ArgumentException($"mask version {masks.MaskVersion} has {masks.KeptColumns.Count} layers, this model {layers.Length}");
        ModelCondensing.Install(model, layers.Select((l, i) =>
            new LayerMask(masks.Stages[i], ModelCondensing.Unpack(masks.KeptColumns[i], l.Groups, l.InChannels))).ToArray());
        return new MasksApplied(settings.WorkerId, masks.MaskVersion, ModelCondensing.Checksum(ModelCondensing.Masks(model)), ReplicaChecksum.Weights(model));
    }

    /// <summary>Evaluates this worker's contiguous shard of the test set (after averaging BatchNorm statistics).</summary>
    public ShardEvaluated EvaluateShard(long atStep)
    {
        AverageBatchNorm();
        var test = data!.Value.Test;
        int from = (int)((long)test.Count * rank / size), to = (int)((long)test.Count * (rank + 1) / size);
        var accuracy = Evaluation.Run(Engine.Model, test, settings.Device, settings.EvalBatchSize, settings.LoaderThreads,
            Enumerable.Range(from, to - from).ToArray());
        return new ShardEvaluated(settings.WorkerId, atStep, accuracy.Top1, accuracy.Top5, accuracy.Loss, accuracy.Samples);
    }

    /// <summary>Averages BatchNorm statistics so the state the coordinator fetches is the job's, not this replica's.</summary>
    public StatePrepared PrepareState(long atStep)
    {
        AverageBatchNorm();
        return new StatePrepared(settings.WorkerId, atStep, ReplicaChecksum.Weights(Engine.Model));
    }

    /// <summary>
    /// Each replica updates its running statistics on its own micro-batches; before evaluation, checkpoints and export
    /// they are averaged over the replicas that compute micro-batches (with fewer micro-batches than workers, some
    /// see no data and hold only initial statistics). Once per step, so two uses at one boundary average once.
    /// </summary>
    void AverageBatchNorm()
    {
        if (batchNormAveragedAt == step) return;
        var statistics = Engine.Model.modules().OfType<BatchNorm>().SelectMany(bn => new[] { bn.RunningMean, bn.RunningVar }).ToArray();
        long length = HostBuffer.Length(statistics);
        var buffer = new float[length + 1]; // the statistics, then how many replicas contributed them
        if (plan!.MicroBatchesOf(rank, size).Any())
        {
            HostBuffer.Gather(statistics, buffer);
            buffer[length] = 1;
        }
        AllReduce(buffer);
        HostBuffer.Scatter(buffer, statistics, 1.0 / buffer[length]);
        batchNormAveragedAt = step;
    }

    void AllReduce(float[] buffer) => dataPlane.AllReduceAsync(buffer, ++operation).GetAwaiter().GetResult();

    public async ValueTask DisposeAsync()
    {
        commands.CompleteAdding();
        dataPlane.Abort(); // a command blocked in an all-reduce ends now
        thread.Join();
        engine?.Dispose();
        await dataPlane.DisposeAsync();
    }
}
