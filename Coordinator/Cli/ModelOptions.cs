using System.CommandLine;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Coordinator.Cli;

/// <summary>The options that describe a model: a preset architecture and dataset, optionally overridden field by field.</summary>
sealed class ModelOptions(string defaultDataset = "cifar10")
{
    public Option<string> Arch { get; } = new("--arch")
    {
        Description = $"architecture preset: {string.Join(", ", CondenseNetConfig.PresetNames)}",
        DefaultValueFactory = _ => "condensenet-86",
    };
    public Option<string> Dataset { get; } = new("--dataset")
    {
        Description = $"dataset the model is for (input channels, size, classes): {string.Join(", ", CondenseNetConfig.DatasetNames)}",
        DefaultValueFactory = _ => defaultDataset,
    };
    public Option<int[]?> Stages { get; } = new("--stages") { Description = "layers per dense block, e.g. 14,14,14 (overrides the preset)", CustomParser = a => Shared.Runtime.Cli.PositiveIntegers(a, "14,14,14") };
    public Option<int[]?> Growth { get; } = new("--growth") { Description = "growth rate per block, e.g. 8,16,32 (overrides the preset)", CustomParser = a => Shared.Runtime.Cli.PositiveIntegers(a, "14,14,14") };
    public Option<int?> Groups { get; } = new("--groups") { Description = "G of the learned 1x1 group convolutions" };
    public Option<int?> Groups3x3 { get; } = new("--groups-3x3") { Description = "groups of the 3x3 convolutions" };
    public Option<int?> CondenseFactor { get; } = new("--condense-factor") { Description = "C: each group keeps 1/C of its inputs" };
    public Option<int?> ImageSize { get; } = new("--image-size") { Description = "imagenet only: input side in pixels, a multiple of 32 (default 224; the evaluation resize keeps the official 256/224 ratio)" };

    public IEnumerable<Option> All => [Arch, Dataset, Stages, Growth, Groups, Groups3x3, CondenseFactor, ImageSize];

    /// <summary>
    /// The model the options describe. With <paramref name="imageFolders"/> (an ImageNet-layout data folder) the class
    /// count is that of its train class folders, so a subset of ImageNet's classes needs no option.
    /// </summary>
    public CondenseNetConfig Build(ParseResult result, string? imageFolders = null)
    {
        string dataset = result.GetValue(Dataset)!;
        var config = CondenseNetConfig.Preset(result.GetValue(Arch)!, dataset);
        int? imageSize = result.GetValue(ImageSize);
        if (imageSize is not null && dataset != "imagenet")
            throw new ConfigurationException($"--image-size applies to imagenet only; {dataset} images have a fixed size ({config.InputSize}x{config.InputSize})");
        int classes = dataset == "imagenet" && imageFolders is not null ? ImageFolderDataset.CountClasses(imageFolders) : 0;
        config = config with
        {
            Stages = NonEmpty(result.GetValue(Stages)) ?? config.Stages,
            Growth = NonEmpty(result.GetValue(Growth)) ?? config.Growth,
            Group1x1 = result.GetValue(Groups) ?? config.Group1x1,
            Group3x3 = result.GetValue(Groups3x3) ?? config.Group3x3,
            CondenseFactor = result.GetValue(CondenseFactor) ?? config.CondenseFactor,
            InputSize = imageSize ?? config.InputSize,
            NumClasses = classes > 0 ? classes : config.NumClasses,
        };
        config.Validate();
        return config;
    }

    /// <summary>The preset's name, or "custom" when a field was overridden.</summary>
    public string Describe(ParseResult result) =>
        new Option[] { Stages, Growth, Groups, Groups3x3, CondenseFactor }.Any(o => result.GetResult(o) is not null)
            ? $"custom (from {result.GetValue(Arch)})"
            : result.GetValue(Arch)!;

    static int[]? NonEmpty(int[]? values) => values is { Length: > 0 } ? values : null;
}
