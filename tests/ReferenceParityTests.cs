using System.Text.Json;
using CondenseCluster.Shared.Model;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>Parity with the official CondenseNet code, through the reference vectors it produced (tests/ReferenceVectors).</summary>
public class ReferenceParityTests
{
    static CondenseNet LoadStage(int stage)
    {
        var model = new CondenseNet(TinyModels.Reference);
        model.load_safetensors(SafeTensors.Reference($"stage{stage}.safetensors"), strict: true);
        model.eval();
        return model;
    }

    static Tensor Input => SafeTensors.Read(SafeTensors.Reference("input.safetensors"))["x"];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void OneDropOnTheStagesWeightsReproducesItsMask(int stage)
    {
        using var model = LoadStage(stage);
        using var previous = LoadStage(stage - 1);
        var expected = SafeTensors.Read(SafeTensors.Reference($"stage{stage}.safetensors"));
        // The stage's weights with the previous stage's masks, counts and stages, then one drop at the stage's progress.
        ModelCondensing.Install(model, ModelCondensing.Masks(previous));
        Assert.Equal(6, ModelCondensing.Apply(model, stage / (2.0 * (model.Config.CondenseFactor - 1))));
        int layers = 0;
        foreach (var (name, layer) in model.LearnedLayers)
        {
            Assert.True(Tensors.Identical(layer.Mask, expected[$"{name}._mask"]), $"{name}: mask differs at stage {stage}");
            Assert.Equal(expected[$"{name}._count"].item<float>(), model.state_dict()[$"{name}._count"].item<float>());
            Assert.Equal(stage, layer.Stage);
            layers++;
        }
        Assert.Equal(6, layers);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void EvalModeLogitsAndFeaturesMatch(int stage)
    {
        using var model = LoadStage(stage);
        var expected = SafeTensors.Read(SafeTensors.Reference($"stage{stage}_outputs.safetensors"));
        using var features = model.Features(Input);
        using var logits = model.forward(Input);
        TensorAssert.Close(expected["features"], features, floor: 1e-6);
        TensorAssert.Close(expected["logits"], logits, floor: 1e-6);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void GroupLassoMatches(int stage)
    {
        using var model = LoadStage(stage);
        using var manifest = JsonDocument.Parse(File.ReadAllText(SafeTensors.Reference("manifest.json")));
        double expected = manifest.RootElement.GetProperty("lasso").GetProperty($"stage{stage}").GetDouble();
        Assert.Equal(expected, model.GroupLasso().item<float>(), expected * 1e-6 + 1e-6);
    }

    [Fact]
    public void ConversionOfStageThreeReproducesTheOfficialIndicesWeightsAndLogits()
    {
        using var model = LoadStage(3);
        using var converted = Conversion.Convert(model);
        converted.eval();
        var expected = SafeTensors.Read(SafeTensors.Reference("converted.safetensors"));
        var actual = converted.state_dict();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            Assert.Equal(tensor.shape, actual[name].shape);
            Assert.True(Tensors.Identical(tensor, actual[name]), $"{name} differs from the official conversion");
        }
        using var logits = converted.forward(Input);
        TensorAssert.Close(SafeTensors.Read(SafeTensors.Reference("converted_outputs.safetensors"))["logits"], logits, floor: 1e-6);
    }
}
