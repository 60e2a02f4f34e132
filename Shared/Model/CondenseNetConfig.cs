namespace CondenseCluster.Shared.Model;

/// <summary>
/// The shape of a CondenseNet (DESIGN.md §1.2). The four published architectures are presets;
/// any other combination of stages, growth rates, groups and condense factor is accepted when it is consistent.
/// </summary>
public sealed record CondenseNetConfig
{
    public required int[] Stages { get; init; }
    public required int[] Growth { get; init; }
    public int Bottleneck { get; init; } = 4;
    public int Group1x1 { get; init; } = 4;
    public int Group3x3 { get; init; } = 4;
    public int CondenseFactor { get; init; } = 4;
    public int InChannels { get; init; } = 3;
    /// <summary>Side of the (square) network input; Fashion-MNIST's 28x28 is zero-padded to 32.</summary>
    public int InputSize { get; init; } = 32;
    /// <summary>Stride of the stem convolution: 1 for CIFAR-sized inputs, 2 for ImageNet.</summary>
    public int InitStride { get; init; } = 1;
    public int NumClasses { get; init; } = 10;
    public double DropoutRate { get; init; }

    public static IReadOnlyList<string> PresetNames { get; } =
        ["condensenet-86", "condensenet-182", "condensenet-74-c4", "condensenet-74-c8"];

    public static IReadOnlyList<string> DatasetNames { get; } = ["cifar10", "cifar100", "fashion-mnist", "imagenet"];

    /// <summary>A published architecture for a dataset: the dataset sets input channels, size, stem stride and classes.</summary>
    public static CondenseNetConfig Preset(string arch, string dataset)
    {
        var config = arch switch
        {
            "condensenet-86" => new CondenseNetConfig { Stages = [14, 14, 14], Growth = [8, 16, 32] },
            "condensenet-182" => new CondenseNetConfig { Stages = [30, 30, 30], Growth = [12, 24, 48] },
            "condensenet-74-c4" => new CondenseNetConfig { Stages = [4, 6, 8, 10, 8], Growth = [8, 16, 32, 64, 128] },
            "condensenet-74-c8" => new CondenseNetConfig
            {
                Stages = [4, 6, 8, 10, 8], Growth = [8, 16, 32, 64, 128], Group1x1 = 8, Group3x3 = 8, CondenseFactor = 8,
            },
            _ => throw new ConfigurationException(
                $"unknown architecture '{arch}'; choose one of {string.Join(", ", PresetNames)} or give stages and growth rates"),
        };
        return config.ForDataset(dataset);
    }

    /// <summary>The same network adapted to a dataset's input channels, size and classes.</summary>
    public CondenseNetConfig ForDataset(string dataset) => dataset switch
    {
        "cifar10" => this with { InChannels = 3, InputSize = 32, InitStride = 1, NumClasses = 10 },
        "cifar100" => this with { InChannels = 3, InputSize = 32, InitStride = 1, NumClasses = 100 },
        "fashion-mnist" => this with { InChannels = 1, InputSize = 32, InitStride = 1, NumClasses = 10 },
        "imagenet" => this with { InChannels = 3, InputSize = 224, InitStride = 2, NumClasses = 1000 },
        _ => throw new ConfigurationException(
            $"unknown dataset '{dataset}'; choose one of {string.Join(", ", DatasetNames)}"),
    };

    /// <summary>
    /// Every dense layer in network order, with the channels it sees: 2·k₀ after the stem, growing by each layer's k.
    /// The one place that walks the architecture's layers (the model, its costs, its masks and the checks below use it).
    /// </summary>
    public IEnumerable<DenseLayerShape> DenseLayers()
    {
        int channels = 2 * Growth[0];
        for (int b = 0; b < Stages.Length; b++)
            for (int l = 0; l < Stages[b]; l++)
            {
                yield return new DenseLayerShape(b, l, channels, Growth[b], Bottleneck * Growth[b]);
                channels += Growth[b];
            }
    }

    /// <summary>Channels entering the classifier.</summary>
    public int FinalChannels => 2 * Growth[0] + Stages.Zip(Growth, (layers, growth) => layers * growth).Sum();

    /// <summary>Side of the feature maps in the last block, which the final average pool covers.</summary>
    public int FinalMapSize => InputSize / InitStride >> (Stages.Length - 1);

    /// <summary>Throws a <see cref="ConfigurationException"/> naming the layer and the numbers of the first inconsistency.</summary>
    public void Validate()
    {
        Require(Stages.Length > 0 && Stages.Length == Growth.Length,
            $"stages ({Stages.Length} blocks) and growth rates ({Growth.Length} values) must have the same, non-zero length");
        Require(Stages.All(s => s > 0) && Growth.All(g => g > 0), "every block needs at least one layer and a positive growth rate");
        Require(CondenseFactor >= 1, $"condense factor C={CondenseFactor} must be at least 1");
        Require(Group1x1 >= 1 && Group3x3 >= 1, $"group counts must be at least 1 (G1x1={Group1x1}, G3x3={Group3x3})");
        Require(Bottleneck >= 1, $"bottleneck {Bottleneck} must be at least 1");
        Require(InChannels >= 1 && NumClasses >= 1, $"input channels ({InChannels}) and classes ({NumClasses}) must be positive");
        Require(DropoutRate is >= 0 and < 1, $"dropout rate {DropoutRate} must be in [0, 1)");
        Require(InitStride is 1 or 2, $"stem stride {InitStride} must be 1 or 2");

        int size = InputSize / InitStride;
        Require(InputSize > 0 && InputSize % InitStride == 0 && size % (1 << (Stages.Length - 1)) == 0,
            $"input size {InputSize} with stem stride {InitStride} cannot be halved {Stages.Length - 1} times between blocks; use a multiple of {InitStride << (Stages.Length - 1)}");

        foreach (var (layer, channels, k, bottleneck) in DenseLayers().Select(d => (d.Name, d.InChannels, d.Growth, d.Bottleneck)))
        {
            Require(channels % Group1x1 == 0,
                $"{layer}.conv_1: {channels} input channels are not divisible by G1x1={Group1x1}");
            Require(channels % CondenseFactor == 0,
                $"{layer}.conv_1: {channels} input channels are not divisible by condense factor C={CondenseFactor}");
            Require(bottleneck % Group1x1 == 0,
                $"{layer}.conv_1: {bottleneck} output channels are not divisible by G1x1={Group1x1}");
            Require(bottleneck % Group3x3 == 0 && k % Group3x3 == 0,
                $"{layer}.conv_2: {bottleneck} input and {k} output channels must both be divisible by G3x3={Group3x3}");
        }
    }

    static void Require(bool condition, string message)
    {
        if (!condition) throw new ConfigurationException(message);
    }

    public override string ToString() =>
        $"stages {string.Join("-", Stages)}, growth {string.Join("-", Growth)}, G1x1={Group1x1}, G3x3={Group3x3}, C={CondenseFactor}, " +
        $"{InChannels}x{InputSize}x{InputSize} input, {NumClasses} classes";
}

/// <summary>
/// One dense layer of a configuration: its block and place in it (from 0), the channels it sees, its growth rate k and
/// its bottleneck width (conv_1's outputs).
/// </summary>
public readonly record struct DenseLayerShape(int Block, int Layer, int InChannels, int Growth, int Bottleneck)
{
    /// <summary>Its name in the state dict, as in the official code (blocks and layers counted from 1).</summary>
    public string Name => $"features.denseblock_{Block + 1}.denselayer_{Layer + 1}";

    public int OutChannels => InChannels + Growth;
}

/// <summary>An inconsistent model or job configuration; the message names the setting and how to fix it.</summary>
public sealed class ConfigurationException(string message) : Exception(message);
