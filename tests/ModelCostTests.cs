using CondenseCluster.Shared.Model;
using Xunit;

namespace CondenseCluster.Tests;

public class ModelCostTests
{
    [Theory]
    [InlineData("condensenet-86", "cifar10", 0.52, 65.8)]
    [InlineData("condensenet-182", "cifar10", 4.2, 513)]
    [InlineData("condensenet-74-c4", "imagenet", 4.8, 529)]
    [InlineData("condensenet-74-c8", "imagenet", 2.9, 274)]
    public void ConvertedCountsReproduceThePapersTable(string arch, string dataset, double millionParams, double millionFlops)
    {
        var total = ModelCost.Total(CondenseNetConfig.Preset(arch, dataset), ModelForm.Converted);
        Assert.Equal(millionParams, Math.Round(total.Parameters / 1e6, Decimals(millionParams)));
        Assert.Equal(millionFlops, Math.Round(total.Flops / 1e6, Decimals(millionFlops)));
    }

    [Fact]
    public void TrainingFormCountsOfCondenseNet86MatchThePaperToo()
    {
        var total = ModelCost.Total(CondenseNetConfig.Preset("condensenet-86", "cifar10"), ModelForm.Training);
        Assert.Equal(0.52, Math.Round(total.Parameters / 1e6, 2));
        Assert.Equal(65.8, Math.Round(total.Flops / 1e6, 1));
    }

    [Theory]
    [InlineData(ModelForm.Training)]
    [InlineData(ModelForm.Converted)]
    public void CountedParametersEqualTheModulesParametersWithLearnedWeightsScaledByOneOverC(ModelForm form)
    {
        var config = TinyModels.Reference;
        using var model = new CondenseNet(config, form);
        long actual = model.named_parameters().Sum(p =>
            form == ModelForm.Training && p.name.EndsWith("conv_1.conv.weight") ? p.parameter.numel() / config.CondenseFactor : p.parameter.numel());
        Assert.Equal(actual, ModelCost.Total(config, form).Parameters);
    }

    [Fact]
    public void PerBlockRowsSumToTheTotal()
    {
        var config = CondenseNetConfig.Preset("condensenet-86", "cifar10");
        var rows = ModelCost.PerBlock(config, ModelForm.Training);
        Assert.Equal(["init_conv", "denseblock_1", "transition_1", "denseblock_2", "transition_2", "denseblock_3", "norm_last+pool", "classifier"],
            rows.Select(r => r.Name));
        Assert.Equal(ModelCost.Total(config, ModelForm.Training).Flops, rows.Sum(r => r.Flops));
    }

    [Fact]
    public void CondenseNet86HasTheOfficialNumberOfTrainableParameters()
    {
        using var model = new CondenseNet(CondenseNetConfig.Preset("condensenet-86", "cifar10"));
        Assert.Equal(1_451_594, model.parameters().Sum(p => p.numel()));
    }

    static int Decimals(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture).Split('.').ElementAtOrDefault(1)?.Length ?? 0;
}
