using System.Globalization;

namespace CondenseCluster.Shared.Data;

/// <summary>
/// Fashion-MNIST from its four IDX files (plain or .gz): 28x28 grayscale, 10 classes, zero-padded by 2 pixels each side
/// to the 32x32 input of the CIFAR-style CondenseNet and normalised with mean 0.2860, std 0.3530. The pad pixels are
/// raw 0, i.e. normalised like a black pixel, (0 − 0.2860)/0.3530 ≈ −0.810, as torchvision's Pad(2) before
/// ToTensor/Normalize gives. No training augmentation: <see cref="IImageDataset.Read"/> accepts a generator and ignores it,
/// so training and evaluation see the same 32x32 image.
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string SystemDirectory = "/usr/share/datasets/fashion-mnist";
    public const int NumClasses = 10, SourceSize = 28, Size = 32;
    const string TrainImages = "train-images-idx3-ubyte", TrainLabels = "train-labels-idx1-ubyte",
        TestImages = "t10k-images-idx3-ubyte", TestLabels = "t10k-labels-idx1-ubyte";
    static readonly string[] FileNames = [TrainImages, TrainLabels, TestImages, TestLabels];

    /// <summary>The real subset committed with the code (6,000 train / 1,000 test images), copied next to every program that references Shared.</summary>
    public static string BundledDirectory => Path.Combine(AppContext.BaseDirectory, "Data", "Bundled", "fashion-mnist-subset");

    /// <summary>
    /// From <paramref name="dataDir"/> when given (the files must be there); else from <paramref name="systemDirectory"/>
    /// when it holds all four files; else the bundled subset, which is reported through <paramref name="log"/>.
    /// </summary>
    public static (InMemoryImageDataset Train, InMemoryImageDataset Test) Open(string? dataDir, Action<string> log, string systemDirectory = SystemDirectory)
    {
        if (dataDir is not null) return Load(dataDir);
        if (MissingFiles(systemDirectory).Count == 0) return Load(systemDirectory);

        var (train, test) = Load(BundledDirectory);
        log(string.Create(CultureInfo.InvariantCulture,
            $"Fashion-MNIST not found in {systemDirectory} (apt-get install dataset-fashion-mnist, or --data DIR): using the bundled subset of {train.Count:N0} train / {test.Count:N0} test images"));
        return (train, test);
    }

    /// <summary>Reads the four files from <paramref name="directory"/>.</summary>
    public static (InMemoryImageDataset Train, InMemoryImageDataset Test) Load(string directory)
    {
        var missing = MissingFiles(directory);
        if (missing.Count > 0)
            throw new FileNotFoundException(
                $"Fashion-MNIST not found in '{directory}': {string.Join(", ", missing)} missing; expected {string.Join(", ", FileNames)} (each plain or .gz)");
        return (LoadSplit(directory, "train", TrainImages, TrainLabels), LoadSplit(directory, "test", TestImages, TestLabels));
    }

    static InMemoryImageDataset LoadSplit(string directory, string split, string imagesName, string labelsName)
    {
        string imagesPath = Find(directory, imagesName)!, labelsPath = Find(directory, labelsName)!;
        var images = IdxFile.ReadImages(imagesPath);
        if (images.Rows != SourceSize || images.Columns != SourceSize)
            throw new DataFormatException($"'{imagesPath}' holds {images.Rows}x{images.Columns} images; Fashion-MNIST images are {SourceSize}x{SourceSize}");
        byte[] labels = IdxFile.ReadLabels(labelsPath, NumClasses);
        if (labels.Length != images.Count)
            throw new DataFormatException($"'{imagesPath}' has {images.Count} images but '{labelsPath}' has {labels.Length} labels");

        string description = string.Create(CultureInfo.InvariantCulture, $"fashion-mnist {split}: {images.Count:N0} images from {directory}");
        return new InMemoryImageDataset(description, images.Pixels, labels, NumClasses, SourceSize, Size, Normalization.FashionMnist, randomCropPadding: null);
    }

    static List<string> MissingFiles(string directory) => FileNames.Where(name => Find(directory, name) is null).ToList();

    static string? Find(string directory, string name) =>
        new[] { name, name + ".gz" }.Select(file => Path.Combine(directory, file)).FirstOrDefault(File.Exists);
}
