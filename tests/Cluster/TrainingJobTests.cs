using System.Runtime.InteropServices;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Data;
using CondenseCluster.Tests.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// The coordinator's job state machine driven message by message, with a recording host in place of the actor
/// (the real actor, processes and ring are in <see cref="ClusterTrainingTests"/>).
/// </summary>
public class TrainingJobTests : TempFolderTest
{
    sealed class RecordingHost : IJobHost
    {
        public List<(string Worker, object Message)> Sent { get; } = [];
        public int? ExitCode { get; private set; }
        public void Send(string workerId, object message) => Sent.Add((workerId, message));
        public void Background(string what, Func<Task<object>> work) => throw new InvalidOperationException($"no background work expected here: {what}");
        public void Ended(int exitCode) => ExitCode = exitCode;
        public T[] All<T>() => Sent.Select(s => s.Message).OfType<T>().ToArray();
    }

    sealed class NoStates : IReplicaStates
    {
        public Task<byte[]> FetchAsync(string endpoint, long step) => throw new InvalidOperationException();
        public Task<string> LoadAsync(string endpoint, long step, byte[] state) => throw new InvalidOperationException();
    }

    // 640 samples / 64 = 10 steps; with C = 4, stage 1 starts at step 2 (progress 0.2 ≥ 1/6).
    static readonly TrainingOptions Options = LocalTrainingTests.Tiny() with { Dataset = "synthetic" };
    readonly RecordingHost host = new();
    readonly RecordingObserver observer = new();

    TrainingJob StartedJob(params string[] workers)
    {
        var data = new SyntheticDataset(640);
        var job = new TrainingJob(Options, new RunSettings { Device = torch.CPU, OutputFolder = Folder }, (data, data), null,
            new ClusterSettings(new ClusterEndpoint(), 0, workers.Length, 1, "cpu", ChecksumEvery: 1, BucketFloats: 1 << 20), observer, host, new NoStates());
        foreach (var w in workers) job.WorkerRegistered(new RegisterWorker(w, $"http://{w}:1", "cpu", 1));
        foreach (var w in workers) job.Handle(new ReplicaReady(w, 0, "initial"));
        return job;
    }

    /// <summary>Importance [G, in] per learned layer that the averaged ring result could be.</summary>
    static float[][,] RandomImportance()
    {
        using var model = new CondenseNet(Options.Model);
        var random = new Random(3);
        return model.LearnedLayers.Select(l =>
        {
            var matrix = new float[l.Layer.Groups, l.Layer.InChannels];
            for (int g = 0; g < matrix.GetLength(0); g++)
                for (int j = 0; j < matrix.GetLength(1); j++)
                    matrix[g, j] = (float)random.NextDouble();
            return matrix;
        }).ToArray();
    }

    static LayerImportance Report(long version, int layer, float[,] matrix) =>
        new(version, layer, MemoryMarshal.AsBytes(matrix.Cast<float>().ToArray().AsSpan()).ToArray());

    /// <summary>Runs the job to its first condensing boundary and answers with importance; returns the expected masks.</summary>
    IReadOnlyList<LayerMask> BroadcastFirstMasks(TrainingJob job, params string[] workers)
    {
        Assert.All(host.All<RunSteps>(), r => Assert.Equal(new RunSteps(0, 2), r));
        foreach (var w in workers) job.Handle(new StepsDone(w, 2, "after-2"));
        Assert.Equal(workers.Length, host.All<ComputeImportance>().Length);

        var importance = RandomImportance();
        for (int i = 0; i < importance.Length; i++) job.Handle(Report(1, i, importance[i]));
        return ModelCondensing.Decide(job.Masks, 2 / 10.0, Options.Model.CondenseFactor, i => importance[i]).Masks;
    }

    [Fact]
    public void EveryWorkerGetsTheSameMaskVersionAndTheJobGoesOnWhenAllChecksumsMatch()
    {
        string[] workers = ["worker-1", "worker-2", "worker-3"];
        var job = StartedJob(workers);
        var expected = BroadcastFirstMasks(job, workers);

        var broadcasts = host.Sent.Where(s => s.Message is ApplyMasks).ToArray();
        Assert.Equal(workers, broadcasts.Select(b => b.Worker));
        var first = (ApplyMasks)broadcasts[0].Message;
        Assert.Equal(1, first.MaskVersion);
        Assert.All(broadcasts, b => Assert.Same(first, b.Message));
        var installed = first.KeptColumns.Select((bits, i) =>
            new LayerMask(first.Stages[i], ModelCondensing.Unpack(bits, expected[i].Kept.GetLength(0), expected[i].Kept.GetLength(1)))).ToArray();
        Assert.Equal(ModelCondensing.Checksum(expected), ModelCondensing.Checksum(installed));

        foreach (var w in workers) job.Handle(new MasksApplied(w, 1, ModelCondensing.Checksum(expected), "after-2"));
        Assert.Null(host.ExitCode);
        Assert.Equal(1, job.MaskVersion);
        Assert.Equal(ModelCondensing.Checksum(expected), ModelCondensing.Checksum(job.Masks));
        Assert.Equal(workers.Length, host.All<RunSteps>().Count(r => r.From == 2));
        Assert.Contains(observer.Events, e => e.StartsWith("mask version 1 applied on 3 workers"));
    }

    [Fact]
    public void AWorkerWhoseMaskChecksumDiffersStopsTheJobByName()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        var expected = BroadcastFirstMasks(job, workers);

        job.Handle(new MasksApplied("worker-1", 1, ModelCondensing.Checksum(expected), "after-2"));
        job.Handle(new MasksApplied("worker-2", 1, "0123456789abcdef", "after-2"));
        Assert.Equal(1, host.ExitCode);
        Assert.Contains(observer.Events, e => e.StartsWith("error: worker-2 diverged") && e.Contains("0123456789abcdef"));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is JobEnded).Select(s => s.Worker));
        Assert.DoesNotContain(host.All<RunSteps>(), r => r.From == 2);
    }

    [Fact]
    public void AWorkerWhoseWeightsDivergeIsNamedAtTheStepItReports()
    {
        string[] workers = ["worker-1", "worker-2", "worker-3"];
        var job = StartedJob(workers);
        job.Handle(new StepReport("worker-1", 0, 2.3 * 32, 3, 32, 10, 1, 0, "same"));
        job.Handle(new StepReport("worker-2", 0, 2.3 * 16, 2, 16, 10, 1, 0, "other"));
        job.Handle(new StepReport("worker-3", 0, 2.3 * 16, 1, 16, 10, 1, 0, "same"));
        Assert.Equal(1, host.ExitCode);
        Assert.Contains(observer.Events, e => e.StartsWith("error: worker-2 diverged: weights at step 1 differ (worker-2 has other; worker-1, worker-3 have same)"));
    }

    [Fact]
    public void AWorkersRingErrorNamesThePeerBehindTheEndpoint()
    {
        var job = StartedJob("worker-1", "worker-2");
        job.Handle(new WorkerFailed("worker-1", "StreamBroken: rank 0, all-reduce 3: receiving from rank 1 (http://worker-2:1): its stream broke"));
        Assert.Equal(1, host.ExitCode);
        Assert.Contains(observer.Events, e => e.Contains("receiving from rank 1 (worker-2 at http://worker-2:1)"));
    }

    [Fact]
    public void AgreeingStepReportsBecomeOneGlobalStep()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        job.Handle(new StepReport("worker-1", 0, 2.0 * 32, 8, 32, 100, 5, 1, "same"));
        job.Handle(new StepReport("worker-2", 0, 3.0 * 32, 16, 32, 120, 2, 0, "same"));
        var step = Assert.Single(observer.Steps);
        Assert.Equal(2.5, step.Loss, 12);
        Assert.Equal(24 / 64.0, step.Accuracy, 12);
        Assert.Equal(64 / 0.122, step.ImagesPerSecond, 6);
        Assert.Null(host.ExitCode);
    }
}
