using CondenseCluster.Shared.Model;
using Xunit;

namespace CondenseCluster.Tests;

public class ConfigValidationTests
{
    [Theory]
    [InlineData("condensenet-86", "cifar10", 800)]
    [InlineData("condensenet-182", "cifar100", 2544)]
    [InlineData("condensenet-74-c4", "imagenet", 2064)]
    [InlineData("condensenet-74-c8", "imagenet", 2064)]
    public void PresetsHaveThePublishedFinalChannels(string arch, string dataset, int channels)
    {
        var config = CondenseNetConfig.Preset(arch, dataset);
        config.Validate();
        Assert.Equal(channels, config.FinalChannels);
        Assert.Equal(dataset == "imagenet" ? 7 : 8, config.FinalMapSize);
    }

    [Fact]
    public void FashionMnistUsesOneInputChannelPaddedTo32()
    {
        var config = CondenseNetConfig.Preset("condensenet-86", "fashion-mnist");
        Assert.Equal((1, 32, 10), (config.InChannels, config.InputSize, config.NumClasses));
    }

    [Fact]
    public void GroupsThatDoNotDivideTheInputsNameTheLayerAndNumbers()
    {
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config() with { Group1x1 = 3 }));
        Assert.Contains("features.denseblock_1.denselayer_1.conv_1: 16 input channels are not divisible by G1x1=3", error.Message);
    }

    [Fact]
    public void GroupsThatDoNotDivideALaterLayersInputsNameThatLayer()
    {
        // Block 1 ends with 16 + 3·8 = 40 channels; block 2's second layer sees 40 + 6 = 46, not divisible by 4.
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config() with { Stages = [3, 2], Growth = [8, 6], Group3x3 = 2 }));
        Assert.Contains("features.denseblock_2.denselayer_2.conv_1: 46 input channels are not divisible by G1x1=4", error.Message);
    }

    [Fact]
    public void CondenseFactorNotDividingTheInputsIsNamed()
    {
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config(condenseFactor: 3, groups: 2)));
        Assert.Contains("features.denseblock_1.denselayer_1.conv_1: 16 input channels are not divisible by condense factor C=3", error.Message);
    }

    [Fact]
    public void CondenseFactorBelowOneIsRefused()
    {
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config(condenseFactor: 0)));
        Assert.Contains("condense factor C=0 must be at least 1", error.Message);
    }

    [Fact]
    public void UnknownArchitectureAndDatasetListTheChoices()
    {
        Assert.Contains("condensenet-86", Assert.Throws<ConfigurationException>(() => CondenseNetConfig.Preset("resnet-50", "cifar10")).Message);
        Assert.Contains("fashion-mnist", Assert.Throws<ConfigurationException>(() => CondenseNetConfig.Preset("condensenet-86", "mnist")).Message);
    }

    [Fact]
    public void ThreeByThreeGroupsMustDivideTheGrowthRate()
    {
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config() with { Group3x3 = 16 }));
        Assert.Contains("conv_2", error.Message);
        Assert.Contains("G3x3=16", error.Message);
    }

    [Fact]
    public void InputSizesThatCannotBeHalvedBetweenBlocksAreRefused()
    {
        var error = Assert.Throws<ConfigurationException>(() => new CondenseNet(TinyModels.Config() with { InputSize = 15 }));
        Assert.Contains("input size 15", error.Message);
    }
}
