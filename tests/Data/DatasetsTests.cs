using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using Xunit;
using static CondenseCluster.Tests.Data.DataTestFiles;

namespace CondenseCluster.Tests.Data;

public class DatasetsTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("cc-datasets-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void TheNamesAreTheModelsDatasetNames() =>
        Assert.Equal(CondenseNetConfig.DatasetNames.Order(), Datasets.Names.Order());

    [Fact]
    public void OpensFashionMnistFromTheGivenFolderAndLogsBothSplits()
    {
        File.WriteAllBytes(Path.Combine(folder, "train-images-idx3-ubyte.gz"), Gzip(IdxImages(2, 28, 28, RandomBytes(2 * 784, 1))));
        File.WriteAllBytes(Path.Combine(folder, "train-labels-idx1-ubyte"), IdxLabels([1, 2]));
        File.WriteAllBytes(Path.Combine(folder, "t10k-images-idx3-ubyte"), IdxImages(1, 28, 28, RandomBytes(784, 2)));
        File.WriteAllBytes(Path.Combine(folder, "t10k-labels-idx1-ubyte.gz"), Gzip(IdxLabels([3])));
        var log = new List<string>();
        var (train, test) = Datasets.Open("fashion-mnist", folder, log.Add);
        Assert.Equal((2, 1), (train.Count, test.Count));
        Assert.Equal([$"fashion-mnist train: 2 images from {folder}", $"fashion-mnist test: 1 images from {folder}"], log);
    }

    [Theory]
    [InlineData("cifar10")]
    [InlineData("cifar100")]
    [InlineData("imagenet")]
    public void DatasetsWithoutADefaultLocationNeedDataDir(string dataset)
    {
        var error = Assert.Throws<ArgumentException>(() => Datasets.Open(dataset, null, _ => { }));
        Assert.Contains($"{dataset} needs --data DIR", error.Message);
    }

    [Theory]
    [InlineData("cifar10", "data_batch_1.bin")]
    [InlineData("cifar100", "train.bin")]
    public void AnEmptyCifarFolderNamesTheFolderAndTheFiles(string dataset, string file)
    {
        var error = Assert.Throws<FileNotFoundException>(() => Datasets.Open(dataset, folder, _ => { }));
        Assert.Contains($"not found in '{folder}'", error.Message);
        Assert.Contains(file, error.Message);
    }

    [Fact]
    public void AnEmptyImageNetFolderNamesTheMissingSplit()
    {
        var error = Assert.Throws<DirectoryNotFoundException>(() => Datasets.Open("imagenet", folder, _ => { }));
        Assert.Contains($"'{Path.Combine(folder, "train")}' does not exist", error.Message);
        Assert.Contains("train/<class>/<image>.JPEG", error.Message);
    }

    [Fact]
    public void ImageNetFoldersOpenAtTheModelsSizeWithTheOfficialResizeRatioAndCountTheirClasses()
    {
        foreach (string split in new[] { "train", "val" })
            foreach (string name in new[] { "ant", "bee", "cat" })
                WriteJpeg(Path.Combine(folder, split, name, "a.JPEG"), 90, 70, (x, y) => new SkiaSharp.SKColor((byte)x, (byte)y, 0));
        var (train, test) = Datasets.Open("imagenet", folder, _ => { }, imageSize: 64);
        Assert.Equal((64, 73, 3), (train.Size, ((ImageFolderDataset)train).ResizeSize, train.NumClasses));
        Assert.Equal((64, 73), (test.Size, ((ImageFolderDataset)test).ResizeSize));
        Assert.Equal(256, ImageFolderDataset.ResizeFor(224));
        Assert.Equal(3, ImageFolderDataset.CountClasses(folder));
        Assert.Equal(0, ImageFolderDataset.CountClasses(Path.Combine(folder, "missing")));
    }

    [Fact]
    public void AnUnknownNameListsTheKnownOnes()
    {
        var error = Assert.Throws<ArgumentException>(() => Datasets.Open("mnist", null, _ => { }));
        Assert.Contains("fashion-mnist, cifar10, cifar100, imagenet", error.Message);
    }
}
