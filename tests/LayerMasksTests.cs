using System.Text;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

public class LayerMasksTests
{
    static CondenseNetConfig Named(string name) => name switch
    {
        "reference" => TinyModels.Reference,
        "tiny" => TinyModels.Config(),
        "tiny-c2" => TinyModels.Config(condenseFactor: 2, groups: 2),
        "tiny-c8" => TinyModels.Config(condenseFactor: 8, groups: 8),
        "condensenet-86" => CondenseNetConfig.Preset(name, "cifar10"),
        _ => CondenseNetConfig.Preset(name, "imagenet"),
    };

    [Theory]
    [InlineData("reference")]
    [InlineData("tiny")]
    [InlineData("tiny-c2")]
    [InlineData("tiny-c8")]
    [InlineData("condensenet-86")]
    [InlineData("condensenet-74-c4")]
    [InlineData("condensenet-74-c8")]
    public void InitialMasksAreThoseOfANewModel(string name)
    {
        var config = Named(name);
        using var model = new CondenseNet(config);
        AssertSame(ModelCondensing.Masks(model), LayerMasks.Initial(config));
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("tiny")]
    [InlineData("tiny-c8")]
    [InlineData("condensenet-86")]
    public void MasksReadFromAStateAreThoseOfTheModelLoadedWithItAtEveryStage(string name)
    {
        var config = Named(name);
        using var model = new CondenseNet(config);
        var generator = new Generator(11);
        AssertSame(ModelCondensing.Masks(model), LayerMasks.FromState(config, Save(model)));
        for (int stage = 1; stage <= 3; stage++)
        {
            // Perturbed weights between drops, so that each stage drops other columns than a fixed order would.
            using (torch.no_grad())
                foreach (var (_, layer) in model.LearnedLayers)
                    layer.Weight.add_(torch.empty(layer.Weight.shape).normal_(0, 0.01, generator));
            Assert.Equal(model.LearnedLayers.Count(), ModelCondensing.Apply(model, stage / (2.0 * (config.CondenseFactor - 1))));

            var state = Save(model);
            using var loaded = new CondenseNet(config);
            using (var reader = new BinaryReader(new MemoryStream(state))) loaded.load(reader, strict: true);
            var read = LayerMasks.FromState(config, state);
            Assert.All(read, m => Assert.Equal(stage, m.Stage));
            AssertSame(ModelCondensing.Masks(model), read);
            AssertSame(ModelCondensing.Masks(loaded), read);
        }
    }

    [Fact]
    public void MasksAreReadFromTheEnginesStateWhoseMomentumFollowsTheModel()
    {
        var options = new TrainingOptions { Arch = "custom", Model = TinyModels.Config(), BatchSize = 8, Seed = 5 };
        using var engine = new TrainingEngine(options, CPU);
        engine.Condense(0.5); // stage 0 → 3 in one move
        var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) engine.SaveState(writer);

        var read = LayerMasks.FromState(options.Model, stream.ToArray());
        Assert.All(read, m => Assert.Equal(3, m.Stage));
        AssertSame(ModelCondensing.Masks(engine.Model), read);
    }

    [Fact]
    public void ATruncatedStateIsNamedWithTheEntryAndTheByteWhereItEnds()
    {
        var config = TinyModels.Config();
        using var model = new CondenseNet(config);
        ModelCondensing.Apply(model, 0.2);
        var state = Save(model);

        foreach (int length in new[] { 0, 1, 3, state.Length / 2, state.Length - 1 })
        {
            var error = Assert.Throws<InvalidDataException>(() => LayerMasks.FromState(config, state[..length]));
            Assert.Contains($"the state ends at byte {length}", error.Message);
            Assert.Contains("truncated", error.Message);
        }

        const string mask = "features.denseblock_1.denselayer_2.conv_1._mask";
        int inMask = IndexOf(state, Encoding.UTF8.GetBytes(mask)) + mask.Length + 10; // past its type and shape, in its data
        var inside = Assert.Throws<InvalidDataException>(() => LayerMasks.FromState(config, state[..inMask]));
        Assert.Contains($"('{mask}'), which needs {32 * 24 * 4} bytes", inside.Message);
    }

    [Fact]
    public void AStateOfAnotherModelIsNamedWithTheLayerThatDiffers()
    {
        using var model = new CondenseNet(TinyModels.Config());
        var state = Save(model);

        var fewer = Assert.Throws<InvalidDataException>(() => LayerMasks.FromState(TinyModels.Reference, state));
        Assert.Contains("holds 4 learned group convolutions", fewer.Message);
        Assert.Contains("has 6", fewer.Message);

        var wider = TinyModels.Config() with { Growth = [8, 16] };
        var shape = Assert.Throws<InvalidDataException>(() => LayerMasks.FromState(wider, state));
        Assert.Contains("'features.denseblock_2.denselayer_1.conv_1._mask' of the replica state is Float32 [32, 32, 1, 1]", shape.Message);
        Assert.Contains("has Float32 [64, 32, 1, 1]", shape.Message);

        var garbage = new byte[64];
        new Random(3).NextBytes(garbage);
        Assert.Throws<InvalidDataException>(() => LayerMasks.FromState(TinyModels.Config(), garbage));
    }

    static byte[] Save(CondenseNet model)
    {
        var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) model.save(writer);
        return stream.ToArray();
    }

    static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);

    static void AssertSame(IReadOnlyList<LayerMask> expected, IReadOnlyList<LayerMask> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Stage, actual[i].Stage);
            Assert.Equal((expected[i].Kept.GetLength(0), expected[i].Kept.GetLength(1)), (actual[i].Kept.GetLength(0), actual[i].Kept.GetLength(1)));
            Assert.Equal(expected[i].Kept, actual[i].Kept);
        }
    }
}
