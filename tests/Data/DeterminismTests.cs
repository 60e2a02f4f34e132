using CondenseCluster.Shared.Data;
using SkiaSharp;
using Xunit;

namespace CondenseCluster.Tests.Data;

/// <summary>
/// A sample's augmented image depends only on (seed, epoch, dataset index): not on the thread, the order of the reads,
/// or how a step's samples are split into batches (which worker reads them).
/// </summary>
public class DeterminismTests : IDisposable
{
    const int Seed = 9, Epoch = 3;
    readonly string root = Directory.CreateTempSubdirectory("cc-determinism-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    public static TheoryData<string> DatasetKinds => ["cifar", "imagefolder"];

    IImageDataset Create(string kind)
    {
        if (kind == "cifar")
        {
            byte[] pixels = DataTestFiles.RandomBytes(24 * 3072, 8);
            return new InMemoryImageDataset("random cifar", pixels, new byte[24], 10, 32, 32, Normalization.Cifar10, randomCropPadding: 4);
        }
        for (int i = 0; i < 8; i++)
            DataTestFiles.WriteJpeg(Path.Combine(root, "train", $"class{i % 2}", $"{i}.JPEG"), 60 + 10 * i, 50 + 7 * i,
                (x, y) => new SKColor((byte)(x * 3 + i), (byte)(y * 5), (byte)(x * y)));
        return new ImageFolderDataset("test images", Path.Combine(root, "train"), ["class0", "class1"]);
    }

    static float[] ReadAugmented(IImageDataset dataset, int index)
    {
        var image = new float[dataset.Channels * dataset.Size * dataset.Size];
        dataset.Read(index, image, SampleOrder.Augmentation(Seed, Epoch, index));
        return image;
    }

    [Theory]
    [MemberData(nameof(DatasetKinds))]
    public void ConcurrentReadsInAnyOrderEqualSequentialReads(string kind)
    {
        var dataset = Create(kind);
        var sequential = Enumerable.Range(0, dataset.Count).Select(i => ReadAugmented(dataset, i)).ToArray();

        var concurrent = new float[dataset.Count][];
        var shuffled = SampleOrder.Permutation(dataset.Count, 1, 2);
        Parallel.ForEach(shuffled.Concat(shuffled.Reverse()), new ParallelOptions { MaxDegreeOfParallelism = 4 },
            index => concurrent[index] = ReadAugmented(dataset, index));

        for (int i = 0; i < dataset.Count; i++) Assert.Equal(sequential[i], concurrent[i]);
    }

    [Theory]
    [MemberData(nameof(DatasetKinds))]
    public void SplittingAStepIntoOtherBatchesGivesEachSampleTheSameImage(string kind)
    {
        var dataset = Create(kind);
        int[] step = SampleOrder.Permutation(dataset.Count, Seed, Epoch)[..8];
        Dictionary<int, float[]> Images(IEnumerable<int[]> batches, int threads)
        {
            using var prefetcher = new BatchPrefetcher(dataset, batches.Select(b => new BatchRequest(b, Epoch, true)), Seed, threads, capacity: 2);
            var images = new Dictionary<int, float[]>();
            int length = dataset.Channels * dataset.Size * dataset.Size;
            while (prefetcher.TryTake(out var batch))
                for (int i = 0; i < batch.Count; i++)
                    images[batch.Request.Indices[i]] = batch.Images[(i * length)..((i + 1) * length)];
            return images;
        }

        var whole = Images([step], threads: 1);
        var split = Images([step[..3], step[3..5], step[5..]], threads: 3);
        Assert.Equal(step.Order(), whole.Keys.Order());
        foreach (int index in step) Assert.Equal(whole[index], split[index]);
    }
}
