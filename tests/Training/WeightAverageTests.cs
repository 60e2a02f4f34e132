using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests.Training;

/// <summary>The moving average of the weights (--ema): its arithmetic, its masks, and its place in the replica state.</summary>
[Collection(nameof(TrainingEngineTests))]
public class WeightAverageTests : TempFolderTest
{
    const double Decay = 0.75;
    static readonly TrainingOptions Job = new()
    {
        Arch = "custom", Model = TinyModels.Config() with { InChannels = 1 }, BatchSize = 8, MicroBatches = 1, Seed = 5, EmaDecay = Decay,
    };

    static (Tensor X, Tensor Y) Batch()
    {
        torch.manual_seed(4);
        return (torch.randn(8, 1, 16, 16), torch.randint(0, 10, [8], dtype: ScalarType.Int64));
    }

    static bool Step(TrainingEngine engine, Tensor x, Tensor y, float poison = 0)
    {
        engine.BeginStep();
        engine.Accumulate(x, y, 0, 0);
        if (poison != 0) engine.Gradients.Flat[3].fill_(poison);
        return engine.ApplyUpdate(0.1);
    }

    [Fact]
    public void TheAverageFollowsEveryAppliedUpdateAndPassesOverASkippedOne()
    {
        var (x, y) = Batch();
        using var engine = new TrainingEngine(Job, CPU);
        var average = engine.Average!;
        // By hand in float64: parameters and running statistics, from the initial model on.
        var expected = WeightAverage.Averaged(engine.Model).Select(t => t.to(float64)).ToArray();
        for (int step = 0; step < 4; step++)
        {
            var before = WeightAverage.Averaged(average.Model).Select(t => t.clone()).ToArray();
            if (!Step(engine, x, y, poison: step == 2 ? float.NaN : 0))
            {
                // The skipped step moved neither the weights nor their average (only the model's running statistics, in forward).
                Assert.All(WeightAverage.Averaged(average.Model).Zip(before), p => Assert.True(Tensors.Identical(p.First, p.Second)));
                continue;
            }
            foreach (var (sum, current) in expected.Zip(WeightAverage.Averaged(engine.Model)))
                sum.mul_(Decay).add_(current.to(float64), alpha: 1 - Decay);
        }
        var averaged = WeightAverage.Averaged(average.Model).ToArray();
        Assert.Equal(expected.Length, averaged.Length);
        foreach (var (byHand, kept) in expected.Zip(averaged))
            Assert.True(torch.allclose(kept.to(float64), byHand, rtol: 0, atol: 1e-6));
        // Not the weights themselves: three updates moved them away from where the average lags.
        Assert.NotEqual(ReplicaChecksum.Weights(engine.Model), ReplicaChecksum.Weights(average.Model));
    }

    [Fact]
    public void TheAverageHasTheTrainedModelsMasksWhetherCondensedHereOrInstalled()
    {
        var (x, y) = Batch();
        using var engine = new TrainingEngine(Job, CPU);
        Step(engine, x, y);
        string Masks(CondenseNet model) => ModelCondensing.Checksum(ModelCondensing.Masks(model));

        Assert.True(engine.Condense(0.2) > 0);
        Assert.Contains(ModelCondensing.Masks(engine.Model), m => m.Stage == 1);
        Assert.Equal(Masks(engine.Model), Masks(engine.Average!.Model));

        using var other = new TrainingEngine(Job with { Seed = 6 }, CPU);
        foreach (double progress in new[] { 0.2, 0.34, 0.5 }) other.Condense(progress); // fully condensed, on other weights: other columns
        engine.InstallMasks(ModelCondensing.Masks(other.Model));
        Assert.Equal(Masks(other.Model), Masks(engine.Average.Model));
        using var converted = Conversion.Convert(engine.Average.Model); // fully condensed: convertible
        Assert.Equal(ModelCost.Total(Job.Model, ModelForm.Converted).Parameters, converted.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void TheReplicaStateCarriesTheAverageAndWeightsLoadedFromAFileRestartIt()
    {
        var (x, y) = Batch();
        using var engine = new TrainingEngine(Job, CPU);
        Step(engine, x, y);
        Step(engine, x, y);
        engine.Condense(0.2);
        var state = new MemoryStream();
        engine.SaveState(new BinaryWriter(state));

        // A joiner (another seed) loads it: the same weights and the same average, so the same checksum.
        using var joiner = new TrainingEngine(Job with { Seed = 99 }, CPU);
        joiner.LoadState(new BinaryReader(new MemoryStream(state.ToArray())));
        Assert.Equal(ReplicaChecksum.Weights(engine), ReplicaChecksum.Weights(joiner));
        foreach (var (name, tensor) in engine.Average!.Model.state_dict())
            Assert.True(Tensors.Identical(tensor, joiner.Average!.Model.state_dict()[name]), name);

        // The coordinator reads both models out of it, passing over the momentum.
        var (trained, average) = TrainingEngine.ReadModels(Job, state.ToArray(), CPU);
        using (trained)
        using (average)
            Assert.Equal(ReplicaChecksum.Weights(engine), ReplicaChecksum.Weights(trained, average));

        // --init-from: the average starts at the loaded weights.
        string saved = Path.Combine(Folder, "trained.ccm");
        ModelFile.Save(engine.Model, saved);
        using var fresh = new TrainingEngine(Job with { Seed = 98 }, CPU);
        fresh.LoadInitialWeights(saved);
        Assert.Equal(ReplicaChecksum.Weights(engine.Model), ReplicaChecksum.Weights(fresh.Average!.Model));
    }

    [Fact]
    public void ADecayOutsideZeroToOneIsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => (Job with { EmaDecay = 1 }).Validate());
        Assert.Contains("--ema 1 must be in (0, 1)", error.Message);
        Assert.Throws<ArgumentException>(() => (Job with { EmaDecay = -0.5 }).Validate());
    }
}
