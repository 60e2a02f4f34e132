using CondenseCluster.Shared.Data;
using Xunit;
using static CondenseCluster.Tests.Data.DataTestFiles;

namespace CondenseCluster.Tests.Data;

public class CifarBinaryTests : IDisposable
{
    const int ImageBytes = 3072;
    static readonly float[] Mean10 = [0.4914f, 0.4824f, 0.4467f], Std10 = [0.2471f, 0.2435f, 0.2616f];
    static readonly float[] Mean100 = [0.5071f, 0.4867f, 0.4408f], Std100 = [0.2675f, 0.2565f, 0.2761f];
    readonly string folder = Directory.CreateTempSubdirectory("cc-cifar-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>CIFAR-10 with two records per training batch (labels 0..9) and three test records.</summary>
    (byte[] TrainPixels, byte[] TestPixels) WriteCifar10(string target)
    {
        Directory.CreateDirectory(target);
        byte[] trainPixels = RandomBytes(10 * ImageBytes, 10), testPixels = RandomBytes(3 * ImageBytes, 11);
        for (int batch = 0; batch < 5; batch++)
            File.WriteAllBytes(Path.Combine(target, $"data_batch_{batch + 1}.bin"),
                CifarRecords([[(byte)(2 * batch)], [(byte)(2 * batch + 1)]], trainPixels[(batch * 2 * ImageBytes)..((batch + 1) * 2 * ImageBytes)]));
        File.WriteAllBytes(Path.Combine(target, "test_batch.bin"), CifarRecords([[9], [0], [4]], testPixels));
        return (trainPixels, testPixels);
    }

    static float[] Read(IImageDataset dataset, int index, Random? augmentation)
    {
        var image = new float[3 * 32 * 32];
        dataset.Read(index, image, augmentation);
        return image;
    }

    /// <summary>The image as torchvision builds it: planes R, G, B of the record, pixel (y, x) at y·32 + x.</summary>
    static float Expected(byte[] pixels, int image, int channel, int y, int x, float[] mean, float[] std) =>
        Normalized(pixels[image * ImageBytes + channel * 1024 + y * 32 + x], mean[channel], std[channel]);

    [Fact]
    public void Cifar10RecordsReadBackWithTheirPlanesAndLabels()
    {
        var (trainPixels, testPixels) = WriteCifar10(Path.Combine(folder, "cifar-10-batches-bin"));
        var (train, test) = CifarBinary.OpenCifar10(folder);

        Assert.Equal((10, 3, 10, 3, 32), (train.Count, test.Count, train.NumClasses, train.Channels, train.Size));
        Assert.Equal(Enumerable.Range(0, 10), Enumerable.Range(0, 10).Select(train.Label));
        Assert.Equal([9, 0, 4], Enumerable.Range(0, 3).Select(test.Label));
        foreach (var (dataset, pixels, index) in new[] { (train, trainPixels, 7), (test, testPixels, 2) })
        {
            float[] image = Read(dataset, index, null);
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        Assert.Equal(Expected(pixels, index, c, y, x, Mean10, Std10), image[c * 1024 + y * 32 + x]);
        }
    }

    [Fact]
    public void Cifar100UsesTheFineLabelAndItsOwnNormalisation()
    {
        byte[] pixels = RandomBytes(2 * ImageBytes, 12);
        File.WriteAllBytes(Path.Combine(folder, "train.bin"), CifarRecords([[19, 99], [0, 42]], pixels));
        File.WriteAllBytes(Path.Combine(folder, "test.bin"), CifarRecords([[3, 7]], pixels[..ImageBytes]));
        var (train, test) = CifarBinary.OpenCifar100(folder);

        Assert.Equal((2, 1, 100), (train.Count, test.Count, train.NumClasses));
        Assert.Equal((99, 42, 7), (train.Label(0), train.Label(1), test.Label(0)));
        float[] image = Read(train, 1, null);
        for (int c = 0; c < 3; c++)
            Assert.Equal(Expected(pixels, 1, c, 5, 17, Mean100, Std100), image[c * 1024 + 5 * 32 + 17]);
    }

    [Fact]
    public void AugmentationIsTheCropOfTheZeroPaddedImageThenTheFlipDrawnFromTheGenerator()
    {
        var (trainPixels, _) = WriteCifar10(folder);
        var (train, _) = CifarBinary.OpenCifar10(folder);
        var seen = new HashSet<(int, int, bool)>();
        for (int seed = 0; seed < 40; seed++)
        {
            // torchvision: pad by 4 with zeros, crop 32x32 at (top, left) drawn in 0..8, then flip with p = 0.5.
            var draws = new Random(seed);
            int top = draws.Next(9), left = draws.Next(9);
            bool flip = draws.NextDouble() < 0.5;
            seen.Add((top, left, flip));

            float[] image = Read(train, 3, new Random(seed));
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                    {
                        int paddedY = top + y, paddedX = left + (flip ? 31 - x : x);
                        int sourceY = paddedY - 4, sourceX = paddedX - 4;
                        bool inside = sourceY is >= 0 and < 32 && sourceX is >= 0 and < 32;
                        float expected = inside ? Expected(trainPixels, 3, c, sourceY, sourceX, Mean10, Std10) : Normalized(0, Mean10[c], Std10[c]);
                        Assert.Equal(expected, image[c * 1024 + y * 32 + x]);
                    }
        }
        Assert.True(seen.Count > 30 && seen.Any(d => d.Item3) && seen.Any(d => !d.Item3));
    }

    [Fact]
    public void TheEvaluationTransformIsThePlainNormalisedImage()
    {
        var (trainPixels, _) = WriteCifar10(folder);
        var (train, _) = CifarBinary.OpenCifar10(folder);
        float[] image = Read(train, 0, null);
        Assert.Equal(Enumerable.Range(0, ImageBytes).Select(i => Normalized(trainPixels[i], Mean10[i / 1024], Std10[i / 1024])), image);
        Assert.Equal(image, Read(train, 0, null));
    }

    [Fact]
    public void ATruncatedRecordIsNamedWithItsOffset()
    {
        WriteCifar10(folder);
        string path = Path.Combine(folder, "data_batch_3.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^100]);
        var error = Assert.Throws<DataFormatException>(() => CifarBinary.OpenCifar10(folder));
        Assert.Contains(path, error.Message);
        Assert.Contains("record 1 (offset 3073) has only 2973 bytes", error.Message);
    }

    [Fact]
    public void Cifar10LabelsAbove9AreRefused()
    {
        WriteCifar10(folder);
        string path = Path.Combine(folder, "test_batch.bin");
        File.WriteAllBytes(path, CifarRecords([[1], [10]], RandomBytes(2 * ImageBytes, 3)));
        var error = Assert.Throws<DataFormatException>(() => CifarBinary.OpenCifar10(folder));
        Assert.Contains($"'{path}': label 10 of record 1 (offset 3073) is out of range", error.Message);
        Assert.Contains("0..9", error.Message);
    }

    [Theory]
    [InlineData(20, 5, "coarse label 20 of record 1 (offset 3074)", "0..19")]
    [InlineData(3, 100, "fine label 100 of record 1 (offset 3075)", "0..99")]
    public void Cifar100LabelsOutOfRangeAreRefused(byte coarse, byte fine, string where, string range)
    {
        File.WriteAllBytes(Path.Combine(folder, "train.bin"), CifarRecords([[0, 0], [coarse, fine]], RandomBytes(2 * ImageBytes, 4)));
        File.WriteAllBytes(Path.Combine(folder, "test.bin"), CifarRecords([[0, 0]], RandomBytes(ImageBytes, 5)));
        var error = Assert.Throws<DataFormatException>(() => CifarBinary.OpenCifar100(folder));
        Assert.Contains("train.bin", error.Message);
        Assert.Contains(where, error.Message);
        Assert.Contains(range, error.Message);
    }

    [Fact]
    public void AMissingFolderNamesTheFolderAndTheExpectedFiles()
    {
        string absent = Path.Combine(folder, "nothing-here");
        var error = Assert.Throws<FileNotFoundException>(() => CifarBinary.OpenCifar10(absent));
        Assert.Contains($"'{absent}' (the folder does not exist)", error.Message);
        Assert.Contains("data_batch_1.bin", error.Message);
        Assert.Contains("cifar-10-batches-bin", error.Message);
    }
}
