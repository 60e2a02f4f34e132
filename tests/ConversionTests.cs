using CondenseCluster.Shared.Model;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests;

public class ConversionTests
{
    [Theory]
    [InlineData(4, 4)]
    [InlineData(2, 2)]
    [InlineData(8, 8)]
    public void ConvertedFeaturesEqualMaskedFeaturesAndLogitsUseThePrunedClassifier(int groups, int condenseFactor)
    {
        using var model = TinyModels.FullyCondensed(TinyModels.Config(condenseFactor, groups), seed: groups);
        Assert.All(model.LearnedLayers, l => Assert.Equal(condenseFactor - 1, l.Layer.Stage));

        using var converted = Conversion.Convert(model);
        model.eval();
        converted.eval();
        using var x = torch.randn(3, 3, 16, 16);
        using var masked = model.Features(x);
        using var condensed = converted.Features(x);
        double scale = masked.abs().max().item<float>();
        Assert.True(scale > 0);
        Assert.True((masked - condensed).abs().max().item<float>() / scale <= 1e-5);

        // Logits: the masked features through the pruned classifier.
        var classifier = (CondensedLinear)converted.Classifier;
        using var expected = classifier.forward(masked);
        using var logits = converted.forward(x);
        Assert.True((expected - logits).abs().max().item<float>() <= 1e-5 * Math.Max(1, expected.abs().max().item<float>()));
        Assert.Equal(model.Config.FinalChannels / 2, classifier.Index.shape[0]);
    }

    [Fact]
    public void ClassifierKeepsTheInputsWithTheLargestColumnNormsInAscendingNormOrder()
    {
        Assert.Equal(new long[] { 0, 3 }, Conversion.ClassifierIndex([5, 1, 0.5f, 9], 2));
    }

    [Fact]
    public void GatherIndexListsEachGroupsKeptColumnsInOrder()
    {
        var kept = new[,] { { false, true, false, true }, { true, false, true, false } };
        Assert.Equal(new long[] { 1, 3, 0, 2 }, Conversion.GatherIndex(kept, 2, "layer"));
    }

    [Fact]
    public void AModelThatIsNotFullyCondensedIsRefusedWithTheLayerName()
    {
        using var model = new CondenseNet(TinyModels.Config());
        ModelCondensing.Apply(model, 0.2);
        var error = Assert.Throws<InvalidOperationException>(() => Conversion.Convert(model));
        Assert.Contains("features.denseblock_1.denselayer_1.conv_1", error.Message);
        Assert.Contains("progress 0.5", error.Message);
    }

    [Fact]
    public void ChannelShuffleRestoresInterleavedOrder()
    {
        // Grouped outputs [g0k0, g0k1, g1k0, g1k1] become [g0k0, g1k0, g0k1, g1k1].
        using var x = torch.tensor(new float[] { 0, 1, 2, 3 }, 1, 4, 1, 1);
        using var shuffled = CondensedConv.ChannelShuffle(x, 2);
        Assert.Equal(new float[] { 0, 2, 1, 3 }, shuffled.data<float>().ToArray());
    }
}
