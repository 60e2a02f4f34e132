using CondenseCluster.Shared.Data;
using Xunit;
using static CondenseCluster.Tests.Data.DataTestFiles;

namespace CondenseCluster.Tests.Data;

public class FashionMnistTests : IDisposable
{
    const int Pixels = 28 * 28;
    readonly string folder = Directory.CreateTempSubdirectory("cc-fmnist-").FullName;
    readonly byte[] trainPixels = RandomBytes(3 * Pixels, 1), testPixels = RandomBytes(2 * Pixels, 2);
    readonly byte[] trainLabels = [3, 0, 9], testLabels = [7, 1];

    public void Dispose() => Directory.Delete(folder, recursive: true);

    void WriteFiles(bool gzip, Action<Dictionary<string, byte[]>>? change = null)
    {
        var files = new Dictionary<string, byte[]>
        {
            ["train-images-idx3-ubyte"] = IdxImages(3, 28, 28, trainPixels),
            ["train-labels-idx1-ubyte"] = IdxLabels(trainLabels),
            ["t10k-images-idx3-ubyte"] = IdxImages(2, 28, 28, testPixels),
            ["t10k-labels-idx1-ubyte"] = IdxLabels(testLabels),
        };
        change?.Invoke(files);
        foreach (var (name, bytes) in files)
            File.WriteAllBytes(Path.Combine(folder, gzip ? name + ".gz" : name), gzip ? Gzip(bytes) : bytes);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsBackPixelExactWithTwoPixelsOfPaddingNormalisedLikeBlack(bool gzip)
    {
        WriteFiles(gzip);
        var (train, test) = FashionMnist.Load(folder);

        Assert.Equal((3, 2, 1, 32, 10), (train.Count, test.Count, train.Channels, train.Size, train.NumClasses));
        Assert.Equal(trainLabels, Enumerable.Range(0, 3).Select(train.Label).Select(l => (byte)l));
        Assert.Equal(testLabels, Enumerable.Range(0, 2).Select(test.Label).Select(l => (byte)l));

        float black = Normalized(0, 0.2860f, 0.3530f);
        Assert.Equal(-0.8102f, black, 4);
        var image = new float[32 * 32];
        for (int i = 0; i < 2; i++)
        {
            test.Read(i, image, augmentation: null);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                {
                    bool inside = y is >= 2 and < 30 && x is >= 2 and < 30;
                    float expected = inside ? Normalized(testPixels[i * Pixels + (y - 2) * 28 + (x - 2)], 0.2860f, 0.3530f) : black;
                    Assert.Equal(expected, image[y * 32 + x]);
                }
        }
    }

    [Fact]
    public void AcceptsAGeneratorButHasNoTrainingAugmentation()
    {
        WriteFiles(gzip: false);
        var (train, _) = FashionMnist.Load(folder);
        float[] evaluation = new float[32 * 32], augmented = new float[32 * 32];
        train.Read(1, evaluation, null);
        train.Read(1, augmented, new Random(5));
        Assert.Equal(evaluation, augmented);
    }

    public static TheoryData<string, string, string[]> BadFiles => new()
    {
        { "wrong magic", "train-images-idx3-ubyte", ["wrong magic number 0x00000801 at offset 0", "expected 0x00000803"] },
        { "truncated images", "train-images-idx3-ubyte", ["truncated", "2368 bytes", "image record 2 (offset 1584) is incomplete"] },
        { "truncated labels", "t10k-labels-idx1-ubyte", ["truncated", "label record 1 (offset 9) is incomplete"] },
        { "label 10", "train-labels-idx1-ubyte", ["label 10 of record 1 (offset 9) is out of range", "0..9"] },
        { "count mismatch", "t10k-labels-idx1-ubyte", ["t10k-images-idx3-ubyte", "has 2 images", "has 3 labels"] },
        { "corrupt gzip", "train-images-idx3-ubyte", ["corrupt gzip"] },
        { "truncated gzip", "train-labels-idx1-ubyte", ["truncated or corrupt gzip"] },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadFilesAreRefusedNamingTheFileAndWhere(string defect, string file, string[] expected)
    {
        WriteFiles(gzip: true, files =>
        {
            switch (defect)
            {
                case "wrong magic": files[file] = IdxImages(3, 28, 28, trainPixels, magic: 0x00000801); break;
                case "truncated images": files[file] = files[file][..^200]; break;
                case "truncated labels": files[file] = files[file][..^1]; break;
                case "label 10": files[file] = IdxLabels([3, 10, 9]); break;
                case "count mismatch": files[file] = IdxLabels([7, 1, 2]); break;
            }
        });
        string path = Path.Combine(folder, file + ".gz");
        byte[] compressed = File.ReadAllBytes(path);
        if (defect == "corrupt gzip")
        {
            compressed[compressed.Length / 2] ^= 0x5a;
            File.WriteAllBytes(path, compressed);
        }
        if (defect == "truncated gzip") File.WriteAllBytes(path, compressed[..^6]);

        var error = Assert.Throws<DataFormatException>(() => FashionMnist.Load(folder));
        Assert.Contains(path, error.Message);
        foreach (string part in expected) Assert.Contains(part, error.Message);
    }

    [Fact]
    public void AMissingFileInTheGivenFolderIsNamed()
    {
        WriteFiles(gzip: false);
        File.Delete(Path.Combine(folder, "t10k-labels-idx1-ubyte"));
        var error = Assert.Throws<FileNotFoundException>(() => FashionMnist.Open(folder, _ => { }));
        Assert.Contains(folder, error.Message);
        Assert.Contains("t10k-labels-idx1-ubyte missing", error.Message);
    }

    [Fact]
    public void TheSystemFolderIsUsedWhenItHoldsTheFiles()
    {
        WriteFiles(gzip: true);
        var log = new List<string>();
        var (train, _) = FashionMnist.Open(null, log.Add, systemDirectory: folder);
        Assert.Equal(3, train.Count);
        Assert.Contains(folder, train.Description);
        Assert.Empty(log);
    }

    [Fact]
    public void TheBundledSubsetOpensWithAllClassesAndSaysSo()
    {
        var log = new List<string>();
        var (train, test) = FashionMnist.Open(null, log.Add, systemDirectory: Path.Combine(folder, "absent"));

        Assert.Equal(
            $"Fashion-MNIST not found in {Path.Combine(folder, "absent")} (apt-get install dataset-fashion-mnist, or --data DIR): " +
            "using the bundled subset of 6,000 train / 1,000 test images", Assert.Single(log));
        Assert.Equal((6000, 1000), (train.Count, test.Count));
        int[] trainCounts = ClassCounts(train), testCounts = ClassCounts(test);
        Assert.Equal([560, 643, 608, 612, 584, 594, 590, 617, 590, 602], trainCounts);
        Assert.Equal([107, 105, 111, 93, 115, 87, 97, 95, 95, 95], testCounts);

        // Real images: mostly dark background, and not all the same.
        float[] first = new float[32 * 32], second = new float[32 * 32];
        train.Read(0, first, null);
        train.Read(1, second, null);
        Assert.NotEqual(first, second);
        Assert.True(first.Max() > 1f);
    }

    static int[] ClassCounts(IImageDataset dataset)
    {
        var counts = new int[dataset.NumClasses];
        for (int i = 0; i < dataset.Count; i++) counts[dataset.Label(i)]++;
        return counts;
    }
}
