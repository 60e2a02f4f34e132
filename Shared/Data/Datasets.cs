using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Data;

/// <summary>Opens a dataset's train and test splits by the names the command line uses.</summary>
public static class Datasets
{
    public static IReadOnlyList<string> Names { get; } = ["fashion-mnist", "cifar10", "cifar100", "imagenet"];

    /// <summary>
    /// Fashion-MNIST searches <paramref name="dataDir"/>, then Debian's package, then the bundled subset; the others need
    /// <paramref name="dataDir"/>. ImageNet folders are cropped to <paramref name="imageSize"/> (the model's input side)
    /// after a resize in the official ratio; the other datasets have a fixed size. Logs what was loaded.
    /// </summary>
    public static (IImageDataset Train, IImageDataset Test) Open(string dataset, string? dataDir, Action<string> log, int imageSize = 224)
    {
        (IImageDataset Train, IImageDataset Test) splits = dataset switch
        {
            "fashion-mnist" => FashionMnist.Open(dataDir, log),
            "cifar10" => CifarBinary.OpenCifar10(Required(dataset, dataDir, "data_batch_1.bin … data_batch_5.bin and test_batch.bin")),
            "cifar100" => CifarBinary.OpenCifar100(Required(dataset, dataDir, "train.bin and test.bin")),
            "imagenet" => ImageFolderDataset.Open(Required(dataset, dataDir, "train/<class>/*.JPEG and val/<class>/*.JPEG"),
                size: imageSize, resizeSize: ImageFolderDataset.ResizeFor(imageSize)),
            _ => throw Unknown(dataset),
        };
        log(splits.Train.Description);
        log(splits.Test.Description);
        return splits;
    }

    /// <summary>Throws a clear error when the images or classes do not match what the model was built for.</summary>
    public static void CheckFits(IImageDataset data, CondenseNetConfig model)
    {
        if (data.Channels != model.InChannels || data.Size != model.InputSize || data.NumClasses != model.NumClasses)
            throw new ConfigurationException(
                $"the data has {data.Channels}x{data.Size}x{data.Size} images in {data.NumClasses} classes, the model expects " +
                $"{model.InChannels}x{model.InputSize}x{model.InputSize} and {model.NumClasses}; build the model for this dataset (--dataset, --image-size)");
    }

    /// <summary>The error for a dataset name the command line does not know.</summary>
    public static ArgumentException Unknown(string dataset) =>
        new($"unknown dataset '{dataset}'; choose one of {string.Join(", ", Names)}", nameof(dataset));

    static string Required(string dataset, string? dataDir, string expected) =>
        dataDir ?? throw new ArgumentException($"{dataset} needs --data DIR, a folder holding {expected}", nameof(dataDir));
}
