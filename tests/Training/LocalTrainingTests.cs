using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Training;

/// <summary>
/// Whole single-node runs on the bundled Fashion-MNIST subset, with a tiny model. They seed libtorch's global
/// generator and initialise from it, so they run alone, as <see cref="TrainingEngineTests"/> do.
/// </summary>
[Collection(nameof(TrainingEngineTests))]
public class LocalTrainingTests : TempFolderTest
{
    internal static TrainingOptions Tiny(int microBatches = 1) => new()
    {
        Arch = "tiny",
        Model = new CondenseNetConfig { Stages = [2, 2], Growth = [4, 8], InChannels = 1, InputSize = 32, NumClasses = 10 },
        Dataset = "fashion-mnist",
        DataDir = BundledData.FashionMnistSubset,
        BatchSize = 64,
        MicroBatches = microBatches,
        Seed = 7,
        RecoverySteps = 100,
        RecoverySamples = 2000,
    };

    RunSettings Settings(string name, long? stopAfter = null, string? resume = null) => new()
    {
        Device = torch.CPU, OutputFolder = Path.Combine(Folder, name), StopAfterStep = stopAfter, ResumeFrom = resume,
    };

    [Fact]
    public void TheSameSeedGivesTheSameLossSequence()
    {
        var first = new RecordingObserver();
        var second = new RecordingObserver();
        LocalTraining.Run(Tiny(), Settings("a", stopAfter: 12), first);
        LocalTraining.Run(Tiny(), Settings("b", stopAfter: 12), second);
        Assert.Equal(12, first.Steps.Count);
        Assert.Equal(first.Steps.Select(s => s.Loss), second.Steps.Select(s => s.Loss));

        var otherSeed = new RecordingObserver();
        LocalTraining.Run(Tiny() with { Seed = 8 }, Settings("c", stopAfter: 12), otherSeed);
        Assert.NotEqual(first.Steps.Select(s => s.Loss), otherSeed.Steps.Select(s => s.Loss));
    }

    [Fact]
    public void TimedCheckpointsComeAtStepBoundariesAndLeaveTheLossesAsTheyWere()
    {
        var plain = new RecordingObserver();
        LocalTraining.Run(Tiny(), Settings("plain", stopAfter: 3), plain);
        var timed = new RecordingObserver();
        LocalTraining.Run(Tiny() with { CheckpointEveryMinutes = 1e-9 }, Settings("timed", stopAfter: 3), timed); // due after every step
        Assert.Equal([1L, 2, 3], timed.Of<CheckpointWritten>().Select(c => c.Step));
        Assert.Equal(plain.Steps.Select(s => s.Loss), timed.Steps.Select(s => s.Loss));
    }

    [Fact]
    public void ResumingFromACheckpointContinuesExactlyAcrossACondensingBoundary()
    {
        // 6,000 samples / 64 = 93 steps; with C = 4 the boundaries are at steps 16, 31 and 47.
        var straight = new RecordingObserver();
        LocalTraining.Run(Tiny(), Settings("straight", stopAfter: 40), straight);

        var firstHalf = new RecordingObserver();
        LocalTraining.Run(Tiny(), Settings("resumed", stopAfter: 20), firstHalf);
        var secondHalf = new RecordingObserver();
        LocalTraining.Run(Tiny() with { Seed = 12345 }, Settings("resumed", stopAfter: 40, resume: Path.Combine(Folder, "resumed")), secondHalf);

        Assert.Contains(secondHalf.Of<CondensingStage>(), e => e.Stage == 2);
        Assert.Equal(straight.Steps.Select(s => s.Step), firstHalf.Steps.Concat(secondHalf.Steps).Select(s => s.Step));
        using var a = ModelFile.Load(Path.Combine(Folder, "straight", "model-trained.ccm"));
        using var b = ModelFile.Load(Path.Combine(Folder, "resumed", "model-trained.ccm"));
        foreach (var (name, tensor) in a.state_dict())
        {
            var other = b.state_dict()[name];
            Assert.True(torch.allclose(tensor.to(torch.float64), other.to(torch.float64), rtol: 0, atol: 1e-6), $"{name} differs after resume");
        }
    }

    [Fact]
    public void TheLargeBatchRecipeFollowsItsScheduleAndAResumedRunKeepsItFromTheCheckpoint()
    {
        // Peak 0.1·64/256 = 0.025 after 0.2·93 ≈ 19 steps of warmup from 0.01; label smoothing 0.1; a weight average.
        var recipe = Tiny() with { WarmupEpochs = 0.2, WarmupLearningRate = 0.01, ScaleLearningRate = true, LabelSmoothing = 0.1, EmaDecay = 0.9 };
        var straight = new RecordingObserver();
        LocalTraining.Run(recipe, Settings("straight", stopAfter: 24), straight);
        Assert.Equal(new LearningRateScaled(0.1, 64, 0.025), Assert.Single(straight.Of<LearningRateScaled>()));
        var rates = straight.Steps.Select(s => s.LearningRate).ToArray();
        Assert.Equal(0.01, rates[0], 12);
        Assert.Equal(0.01 + 0.015 * 10 / 19, rates[10], 12);
        Assert.Equal(0.025, rates[19], 12); // the cosine starts at the peak
        Assert.True(rates[23] < rates[19]);

        // Resumed with the official recipe asked for: the checkpoint's job configuration wins, the rates and losses go on alike.
        var firstHalf = new RecordingObserver();
        LocalTraining.Run(recipe, Settings("resumed", stopAfter: 12), firstHalf);
        var secondHalf = new RecordingObserver();
        LocalTraining.Run(Tiny(), Settings("resumed", stopAfter: 24, resume: Path.Combine(Folder, "resumed")), secondHalf);
        var resumed = firstHalf.Steps.Concat(secondHalf.Steps).ToArray();
        Assert.Equal(rates, resumed.Select(s => s.LearningRate));
        Assert.Equal(straight.Steps.Select(s => s.Loss), resumed.Select(s => s.Loss));
        // The checkpoint carried the weight average: it ends bit for bit where the uninterrupted run's does.
        string Average(string run)
        {
            using var model = ModelFile.Load(Path.Combine(Folder, run, "model-ema-trained.ccm"));
            return ReplicaChecksum.Weights(model);
        }
        Assert.Equal(Average("straight"), Average("resumed"));
    }

    [Fact]
    public void ACorruptCheckpointIsRefusedAndThePreviousOneIsUsed()
    {
        var options = Tiny() with { CheckpointEverySteps = 5 };
        LocalTraining.Run(options, Settings("run", stopAfter: 10), new RecordingObserver());
        var store = CheckpointStore.OfRun(Path.Combine(Folder, "run"));
        Assert.Equal([store.PathFor(10), store.PathFor(5)], store.List());

        var bytes = File.ReadAllBytes(store.PathFor(10));
        File.WriteAllBytes(store.PathFor(10), bytes[..(bytes.Length - 1000)]);
        var error = Assert.Throws<CorruptFileException>(() => Checkpoint.Read(store.PathFor(10)));
        Assert.Contains("truncated", error.Message);

        var resumed = new RecordingObserver();
        LocalTraining.Run(options, Settings("run", stopAfter: 12, resume: Path.Combine(Folder, "run")), resumed);
        Assert.EndsWith("checkpoint-000000010.ccc", Assert.Single(resumed.Of<CheckpointSkipped>()).Path);
        Assert.Equal(5, resumed.Steps[0].Step);
    }

    [Fact]
    public void ATinyModelLearnsFashionMnistAndKeepsItsAccuracyAfterConversion()
    {
        var observer = new RecordingObserver();
        var summary = LocalTraining.Run(Tiny(), Settings("learn"), observer);

        double firstLosses = observer.Steps.Take(10).Average(s => s.Loss);
        double lastLosses = observer.Steps.TakeLast(10).Average(s => s.Loss);
        Assert.True(lastLosses < 0.75 * firstLosses, $"loss went from {firstLosses:F3} to {lastLosses:F3}");
        // Chance is 10 %; this tiny model reaches about 47 % in its one epoch of 93 steps.
        Assert.True(summary.Masked!.Value.Top1 > 0.35, $"masked test accuracy {summary.Masked.Value.Top1:P1}");
        Assert.True(summary.Recovered!.Value.Top1 > summary.Masked.Value.Top1 - 0.05, $"recovered {summary.Recovered.Value.Top1:P1}");
        Assert.Equal(0.75, summary.Sparsity, 3);
        Assert.Equal(["model-trained.ccm", "model-converted.ccm", "model-converted.pt", "model-converted.onnx", "model-trained.pt"], summary.Files.Select(Path.GetFileName));
        Assert.All(summary.Files, f => Assert.True(File.Exists(f), f));
        Assert.Single(observer.Of<ClassifierRecovered>());
    }
}

/// <summary>Keeps what a run reports, for assertions.</summary>
sealed class RecordingObserver : ITrainingObserver
{
    public List<StepMetrics> Steps { get; } = [];
    public List<EpochMetrics> Epochs { get; } = [];
    public List<TrainingEvent> Events { get; } = [];
    public List<WorkerReport> Workers { get; } = [];
    public RunStarted? Run { get; private set; }
    public TrainingSummary? Summary { get; private set; }

    public void Started(RunStarted run) => Run = run;
    public void Step(StepMetrics step) => Steps.Add(step);
    public void Epoch(EpochMetrics epoch) => Epochs.Add(epoch);
    public void Event(TrainingEvent e) => Events.Add(e);

    /// <summary>The events of one record type, in order.</summary>
    public T[] Of<T>() where T : TrainingEvent => Events.OfType<T>().ToArray();

    public void Finished(TrainingSummary summary) => Summary = summary;
    public void Worker(WorkerReport worker) => Workers.Add(worker);
}
