using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// Real clusters: the coordinator program and its worker processes form an Akka cluster on loopback and all-reduce
/// over gRPC, on the bundled Fashion-MNIST subset with a tiny model.
/// </summary>
[Collection(ClusterProcesses.Name)]
public class ClusterTrainingTests(ITestOutputHelper log) : TempFolderTest
{
    static readonly string[] TinyModel = ["--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset, "--seed", "7"];

    [Fact]
    public void TwoWorkersEndWithTheWeightsMasksAndBoundariesOfOneProcessWithTheSameMicroBatches()
    {
        // 6,000 samples / 64 = 93 steps; with C = 4 the first condensing boundary is before step 16.
        string[] job = [.. TinyModel, "--micro-batches", "2", "--stop-after", "20", "--checkpoint-every", "8"];
        string cluster = OnCluster("cluster", [.. job, "--checksum-every", "1", "--bucket-mb", "0.004"]); // 1,000-value buckets: three for this model
        Assert.Equal(["worker-1", "worker-2"], RunEvents.Single<ClusterFormed>(cluster).Ranks);
        var decided = RunEvents.Of<MasksDecided>(cluster)[0];
        Assert.Equal((1L, 16L, 2), (decided.Version, decided.Step, decided.Workers));
        Assert.Contains(RunEvents.Of<MasksInForce>(cluster), m => m.Version == 1 && m.Workers == 2);
        var agree = RunEvents.Single<ReplicasAgree>(cluster);
        Assert.Equal((2, 20L), (agree.Workers, agree.Step));

        // The same job in one process with M = 2 micro-batches.
        string single = InOneProcess("single", job);
        // One schedule for both: the checkpoint at 16 comes before the condensing there, and the last step writes one.
        Assert.Equal([("checkpoint", 8L), ("checkpoint", 16L), ("condense", 16L), ("checkpoint", 20L)], Boundaries(single));
        Assert.Equal(Boundaries(single), Boundaries(cluster));

        var (worst, localMasks, distributedMasks) = SavedModels.Compare(Path.Combine(single, "model-trained.ccm"), Path.Combine(cluster, "model-trained.ccm"));
        log.WriteLine($"max relative weight difference: {worst:E2}");
        Assert.True(worst <= 1e-5, $"weights differ by {worst:E2} relative");
        Assert.Equal(localMasks, distributedMasks);
        using var distributed = ModelFile.Load(Path.Combine(cluster, "model-trained.ccm"));
        Assert.Contains(ModelCondensing.Masks(distributed), m => m.Stage == 1);
    }

    [Fact]
    public void ThreeWorkersSplitTheDefaultBatchUnequallyAndEndWithTheWeightsOfOneProcessWithTheSamePlan()
    {
        // The default batch of 64 in one micro-batch per worker: 22, 21 and 21 samples.
        string[] job = [.. TinyModel, "--stop-after", "6", "--recovery-steps", "0"];
        string cluster = OnCluster("cluster", [.. job, "--local-workers", "3"]);
        var started = RunEvents.Lines(cluster, "start")[0].As<RunStarted>();
        Assert.Equal((64, 3), (started.BatchSize, started.MicroBatches));
        Assert.Equal(3, RunEvents.Single<ReplicasAgree>(cluster).Workers);

        string single = InOneProcess("single", [.. job, "--micro-batches", "3"]);
        // Three partial sums meet in the ring in another order than one process adds them (two commute exactly, three
        // do not), as in the fault-injection suite: measured, losses within 3e-6 relative after 6 steps and the weights
        // within 2.1e-3 (a BN bias near zero), and 3.0e-3 with 48 samples in three equal micro-batches; 5e-3 as there.
        Assert.Equal(RunEvents.Lines(single, "step").Select(s => s.As<StepMetrics>().Loss), RunEvents.Lines(cluster, "step").Select(s => s.As<StepMetrics>().Loss),
            new ToleranceComparer(1e-4));
        var (worst, _, _) = SavedModels.Compare(Path.Combine(single, "model-trained.ccm"), Path.Combine(cluster, "model-trained.ccm"));
        log.WriteLine($"max relative weight difference: {worst:E2}");
        Assert.True(worst <= 5e-3, $"weights differ by {worst:E2} relative");
    }

    [Fact]
    public void TwoWorkersStartFromASavedModelAsOneProcessDoes()
    {
        // A short run leaves a model at stage 1 (condensed before step 16); both runs go on from it with --init-from.
        string source = InOneProcess("source", [.. TinyModel, "--micro-batches", "2", "--stop-after", "17"]);
        string saved = Path.Combine(source, "model-trained.ccm");
        string[] job = [.. TinyModel, "--micro-batches", "2", "--stop-after", "3", "--init-from", saved];

        string cluster = OnCluster("cluster", job);
        Assert.Equal(new InitializedFrom(saved, NewClassifier: false), RunEvents.Single<InitializedFrom>(cluster));
        var loading = RunEvents.Single<StartingStateLoading>(cluster);
        Assert.Equal((0L, 2, saved), (loading.Step, loading.Workers, loading.From));
        string single = InOneProcess("single", job);
        Assert.Equal(new InitializedFrom(saved, NewClassifier: false), RunEvents.Single<InitializedFrom>(single));

        // The saved masks are in force from the first step; two partial sums add in either order alike, as in the test above.
        var (worst, startMasks, _) = SavedModels.Compare(saved, Path.Combine(single, "model-trained.ccm"));
        var (clusterWorst, singleMasks, clusterMasks) = SavedModels.Compare(Path.Combine(single, "model-trained.ccm"), Path.Combine(cluster, "model-trained.ccm"));
        Assert.Equal(startMasks, singleMasks);
        Assert.Equal(singleMasks, clusterMasks);
        Assert.True(worst > 0, "three steps from the saved model changed nothing");
        Assert.True(clusterWorst <= 1e-5, $"weights differ by {clusterWorst:E2} relative");
        // Fresh runs of the same job begin elsewhere: the first loss of a run from the saved model is the saved model's.
        Assert.True(RunEvents.Lines(single, "step")[0].As<StepMetrics>().Loss < RunEvents.Lines(source, "step")[0].As<StepMetrics>().Loss);
    }

    /// <summary>Doubles equal to a relative tolerance.</summary>
    sealed class ToleranceComparer(double relative) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= relative * Math.Max(Math.Abs(a), Math.Abs(b));
        public int GetHashCode(double value) => 0;
    }

    /// <summary>Trains on the embedded cluster (the coordinator and its local workers) into a folder of its own, which it returns.</summary>
    string OnCluster(string name, string[] args)
    {
        string folder = Path.Combine(Folder, name);
        var (code, output) = CoordinatorProgram.Run(["train", .. args, "--port", "0", .. ClusterProcesses.FreeControlPorts, "--out", folder]);
        log.WriteLine(output);
        Assert.True(code == 0, output);
        return folder;
    }

    /// <summary>
    /// Trains in this one process into a folder of its own, which it returns; with one thread, as each worker has (a
    /// different thread count changes the order of float sums inside convolutions).
    /// </summary>
    string InOneProcess(string name, string[] args)
    {
        string folder = Path.Combine(Folder, name);
        var (code, output) = CoordinatorProgram.Run(["train", "--local", "--threads", "1", .. args, "--out", folder]);
        Assert.True(code == 0, output);
        return folder;
    }

    /// <summary>
    /// The step boundaries a run's metrics.jsonl records, by step: condensing, evaluations, checkpoints. Within a step in
    /// the schedule's order, which a cluster's log may not keep: its checkpoints are written while training goes on.
    /// </summary>
    static (string Boundary, long Step)[] Boundaries(string folder)
    {
        string[] order = ["evaluate", "checkpoint", "condense"]; // JobSchedule.BoundariesAt's order at one step
        int stepsPerEpoch = RunEvents.Lines(folder, "start")[0].As<RunStarted>().StepsPerEpoch;
        return [.. RunEvents.Of<CondensingStage>(folder).Select(e => ("condense", e.Step))
            .Concat(RunEvents.Of<MasksInForce>(folder).Select(e => ("condense", e.Step)))
            .Concat(RunEvents.Lines(folder, "epoch").Select(e => ("evaluate", (e.As<EpochMetrics>().Epoch + 1L) * stepsPerEpoch)))
            .Concat(RunEvents.Of<CheckpointWritten>(folder).Select(e => ("checkpoint", e.Step)))
            .OrderBy(b => b.Item2).ThenBy(b => Array.IndexOf(order, b.Item1))];
    }

    [Fact]
    public void SixteenWorkerProcessesTrainThroughEveryStageEvaluateCheckpointAndConvert()
    {
        // 6,000 samples / 256 = 23 steps of 16 micro-batches of 16; with C = 4 the stages move before steps 4, 8 and 12.
        string run = OnCluster("sixteen", [.. TinyModel, "--local-workers", "16", "--batch-size", "256", "--checkpoint-every", "10", "--recovery-steps", "0"]);
        Assert.Equal(16, RunEvents.Single<ClusterFormed>(run).Ranks.Count);
        Assert.Equal([(1L, 4L), (2, 8), (3, 12)], RunEvents.Of<MasksDecided>(run).Select(m => (m.Version, m.Step)));
        Assert.Equal([1L, 2, 3], RunEvents.Of<MasksInForce>(run).Where(m => m.Workers == 16).Select(m => m.Version));
        Assert.Equal([10L, 20, 23], RunEvents.Of<CheckpointWritten>(run).Select(c => c.Step));
        Assert.Equal((16, 23L), (RunEvents.Single<ReplicasAgree>(run).Workers, RunEvents.Single<ReplicasAgree>(run).Step));
        Assert.Equal(1000, Assert.Single(RunEvents.Lines(run, "epoch")).As<EpochMetrics>().Test.Samples); // 16 shards of the test set
        Assert.True(RunEvents.Single<ModelConverted>(run).Converted.Samples > 0);
        var workers = RunEvents.Lines(run, "summary")[0].As<TrainingSummary>().Workers;
        Assert.Equal(16, workers.Count);
        Assert.All(workers, w => Assert.Equal(23, w.Steps));
        foreach (var w in workers) log.WriteLine($"{w.Worker}: peak resident {w.PeakResidentBytes / 1e6:F0} MB, median step {w.StepMs:F0} ms");
        Assert.All(workers, w => Assert.InRange(w.PeakResidentBytes, 50_000_000, 2_000_000_000));
    }

    [Fact]
    public void HalfPrecisionGradientsKeepTheReplicasIdenticalAndTrainAsFloat32Does()
    {
        string Train(string name, params string[] extra)
        {
            string folder = OnCluster(name, [.. TinyModel, "--stop-after", "20", "--checksum-every", "1", .. extra]);
            var agree = RunEvents.Single<ReplicasAgree>(folder);
            Assert.Equal((2, 20L), (agree.Workers, agree.Step));
            return folder;
        }
        string float32 = Train("fp32");
        string float16 = Train("fp16", "--gradient-precision", "fp16");
        Assert.Equal(WirePrecision.Float16, RunEvents.Single<GradientPrecisionChosen>(float16).Precision);

        // The accuracy check: the same losses step by step and the same masks, and weights that moved apart only by the
        // halves' rounding, which 20 steps of SGD with momentum amplify (measured: at most 3 % of a parameter's largest
        // value, in BatchNorm biases near zero).
        double[] Losses(string folder) => [.. RunEvents.Lines(folder, "step").Select(l => l.GetProperty("loss").GetDouble())];
        var (exact, halves) = (Losses(float32), Losses(float16));
        Assert.Equal(20, halves.Length);
        double lossGap = exact.Zip(halves, (a, b) => Math.Abs(a - b) / a).Max();
        log.WriteLine($"largest loss difference, fp16 vs fp32 gradients: {lossGap:P3}");
        Assert.True(lossGap <= 2e-3, $"losses differ by {lossGap:P2}"); // measured 0.013 %

        var (worst, float32Masks, float16Masks) = SavedModels.Compare(Path.Combine(float32, "model-trained.ccm"), Path.Combine(float16, "model-trained.ccm"));
        Assert.Equal(float32Masks, float16Masks);
        log.WriteLine($"largest weight difference, fp16 vs fp32 gradients: {worst:P2} of a parameter's largest value");
        Assert.True(worst > 0, "fp16 gradients changed nothing: were they sent as fp16?");
        Assert.True(worst <= 0.1, $"weights differ by {worst:P1} of a parameter's largest value");
    }
}

/// <summary>Cluster runs start several processes each; run them one at a time so they keep to the time budget.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public class ClusterProcesses
{
    public const string Name = "cluster processes";

    /// <summary>The control plane's ports, chosen free, so that no test depends on 4080/4081 being unused.</summary>
    public static readonly string[] FreeControlPorts = ["--api-port", "0", "--dashboard-port", "0"];
}

/// <summary>The README's main command, exactly as a newcomer types it, with only the model and data made test-sized.</summary>
[Collection(ClusterProcesses.Name)]
public class ReadmeMainCommandTests(ITestOutputHelper log)
{
    [Fact]
    public void TheMainCommandFormsTheClusterTrainsCondensesAndPrintsItsSummary()
    {
        string root = RepositoryRoot();
        string command = File.ReadLines(Path.Combine(root, "README.md")).First(l => l.StartsWith("dotnet run --project Coordinator -- train"));
        var words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string output = Path.Combine(Directory.CreateTempSubdirectory("cc-readme-").FullName, "run");
        try
        {
            var (code, stdout, stderr) = ChildProcess.Run(words[0], [.. words[1..], "--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset,
                "--recovery-steps", "50", "--recovery-samples", "1000", "--out", output], workingDirectory: root, build: true);
            string text = stdout + stderr;
            log.WriteLine($"$ {command} …\n{text}");
            Assert.True(code == 0, text);
            Assert.Equal(["worker-1", "worker-2"], RunEvents.Single<ClusterFormed>(output).Ranks);
            Assert.Equal([1L, 2, 3], RunEvents.Of<MasksInForce>(output).Where(m => m.Workers == 2).Select(m => m.Version));
            var epoch = Assert.Single(RunEvents.Lines(output, "epoch")).As<EpochMetrics>();
            Assert.Equal(0, epoch.Epoch);
            Assert.True(RunEvents.Single<ModelConverted>(output).Converted.Samples > 0);
            // The summary as a person reads it.
            Assert.Contains("per worker (medians):", text);
            Assert.Contains("learned-conv sparsity │ 75.0 %", text);
            Assert.True(File.Exists(Path.Combine(output, "model-converted.pt")));

            // The sharded evaluation of the workers (BatchNorm statistics averaged) is the evaluation of the saved model.
            using var model = ModelFile.Load(Path.Combine(output, "model-trained.ccm"));
            var (_, test) = Shared.Data.Datasets.Open("fashion-mnist", BundledData.FashionMnistSubset, _ => { });
            var whole = Evaluation.Run(model, test, torch.CPU, batchSize: 100, loaderThreads: 1);
            Assert.Equal(whole.Samples, epoch.Test.Samples);
            Assert.Equal(whole.Top1, epoch.Test.Top1, 1e-9); // shards weighted by their sizes: equal counts, up to float rounding
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(output)!, recursive: true);
        }
    }

    static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "CondenseCluster.sln"))) return folder.FullName;
        throw new DirectoryNotFoundException("the tests run outside the repository");
    }
}
