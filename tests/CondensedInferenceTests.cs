using CondenseCluster.Shared.Model;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>The compiled converted model computes what the masked and the converted model compute, in every form.</summary>
public class CondensedInferenceTests
{
    public static TheoryData<int, int, CondensedInference.Pointwise?, CondensedInference.Spatial> Forms()
    {
        var data = new TheoryData<int, int, CondensedInference.Pointwise?, CondensedInference.Spatial>();
        foreach (var (groups, factor) in new[] { (4, 4), (2, 2), (8, 8) })
        {
            data.Add(groups, factor, null, default); // measured per layer
            foreach (var pointwise in Enum.GetValues<CondensedInference.Pointwise>())
                foreach (var spatial in Enum.GetValues<CondensedInference.Spatial>())
                    data.Add(groups, factor, pointwise, spatial);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void FeaturesEqualTheMaskedModelsAndLogitsTheConvertedModels(int groups, int condenseFactor, CondensedInference.Pointwise? pointwise, CondensedInference.Spatial spatial)
    {
        using var model = TinyModels.FullyCondensed(TinyModels.Config(condenseFactor, groups), seed: groups);
        using var converted = Conversion.Convert(model);
        model.eval();
        converted.eval();
        using var compiled = CondensedInference.Compile(converted, pointwise is { } form ? new CondensedInference.FixedForms(form, spatial) : null);
        using var _ = torch.no_grad();
        foreach (int batch in new[] { 1, 3 })
        {
            using var x = torch.randn(batch, 3, 16, 16);
            using var masked = model.Features(x);
            using var features = compiled.Features(x);
            TensorAssert.Close(masked, features);

            using var expected = converted.forward(x);
            using var logits = compiled.Forward(x);
            TensorAssert.Close(expected, logits);
        }
    }

    [Fact]
    public void MeasuredFormsAreKeptPerLayerAndInputShape()
    {
        var config = TinyModels.Config();
        using var model = TinyModels.FullyCondensed(config, seed: 3);
        using var converted = Conversion.Convert(model);
        converted.eval();
        using var compiled = CondensedInference.Compile(converted);
        Assert.Empty(compiled.ChosenForms());
        using (var x = torch.randn(2, 3, 16, 16)) compiled.Features(x).Dispose();
        using (var x = torch.randn(2, 3, 16, 16)) compiled.Features(x).Dispose();
        int layers = config.Stages.Sum();
        Assert.Equal(layers, compiled.ChosenForms().Count);
        using (var x = torch.randn(1, 3, 16, 16)) compiled.Features(x).Dispose();
        Assert.Equal(2 * layers, compiled.ChosenForms().Count);
        Assert.Contains(compiled.ChosenForms(), f => f.StartsWith("block 2 layer 2, N=1 8x8: 1x1 "));
    }

    [Fact]
    public void ATrainingFormModelIsRefusedWithTheFix()
    {
        using var model = new CondenseNet(TinyModels.Config());
        var error = Assert.Throws<ArgumentException>(() => CondensedInference.Compile(model));
        Assert.Contains("convert the trained model first", error.Message);
    }
}
