using System.Diagnostics;
using CondenseCluster.Shared.Data;
using Xunit;

namespace CondenseCluster.Tests.Data;

public class BatchPrefetcherTests
{
    const int Seed = 42;

    /// <summary>A CIFAR-shaped in-memory set with random pixels and the real crop + flip augmentation.</summary>
    static InMemoryImageDataset RandomCifar(int count)
    {
        byte[] pixels = DataTestFiles.RandomBytes(count * 3072, 3);
        byte[] labels = [.. Enumerable.Range(0, count).Select(i => (byte)(i * 7 % 10))];
        return new InMemoryImageDataset("random cifar", pixels, labels, 10, 32, 32, Normalization.Cifar10, randomCropPadding: 4);
    }

    static List<BatchRequest> Requests(int count, int batchSize, int batches)
    {
        var order = SampleOrder.Permutation(count, Seed, 0);
        return [.. Enumerable.Range(0, batches).Select(b => new BatchRequest(order[(b * batchSize)..((b + 1) * batchSize)], Epoch: b / 3, Augment: b % 4 != 3))];
    }

    static (float[] Images, long[] Labels) ReadSequentially(IImageDataset dataset, BatchRequest request)
    {
        int length = dataset.Channels * dataset.Size * dataset.Size;
        var images = new float[request.Indices.Length * length];
        for (int i = 0; i < request.Indices.Length; i++)
        {
            int index = request.Indices[i];
            dataset.Read(index, images.AsSpan(i * length, length), request.Augment ? SampleOrder.Augmentation(Seed, request.Epoch, index) : null);
        }
        return (images, [.. request.Indices.Select(index => (long)dataset.Label(index))]);
    }

    static List<Batch> TakeAll(BatchPrefetcher prefetcher)
    {
        var batches = new List<Batch>();
        while (prefetcher.TryTake(out var batch)) batches.Add(batch);
        return batches;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 8)]
    public void BatchesComeInRequestOrderAndEqualSequentialReads(int threads, int capacity)
    {
        var dataset = RandomCifar(64);
        var requests = Requests(64, 6, 10);
        using var prefetcher = new BatchPrefetcher(dataset, requests, Seed, threads, capacity);
        var batches = TakeAll(prefetcher);

        Assert.Equal(requests, batches.Select(b => b.Request));
        foreach (var batch in batches)
        {
            var (images, labels) = ReadSequentially(dataset, batch.Request);
            Assert.Equal(6, batch.Count);
            Assert.Equal(labels, batch.Labels);
            Assert.Equal(images, batch.Images);
        }
        Assert.False(prefetcher.TryTake(out _));
    }

    [Fact]
    public void ASlowConsumerNeverHasMoreThanCapacityBatchesReadAhead()
    {
        const int BatchSize = 4, Capacity = 2;
        var dataset = new SyntheticDataset(200);
        using var prefetcher = new BatchPrefetcher(dataset, Requests(200, BatchSize, 12), Seed, threads: 2, Capacity);
        for (int taken = 0; taken < 12; taken++)
        {
            int bound = (taken + Capacity) * BatchSize;
            // The producers fill the queue up to the bound, and stop there however long the consumer takes.
            Assert.True(SpinWait.SpinUntil(() => dataset.ReadsStarted >= Math.Min(bound, 48), TimeSpan.FromSeconds(10)));
            Thread.Sleep(20);
            Assert.Equal(Math.Min(bound, 48), dataset.ReadsStarted);
            Assert.True(prefetcher.TryTake(out _));
        }
        Assert.False(prefetcher.TryTake(out _));
    }

    [Fact]
    public void ALoaderErrorIsRethrownNamingTheDatasetAndTheFile()
    {
        var requests = Enumerable.Range(0, 5).Select(b => new BatchRequest([.. Enumerable.Range(4 * b, 4)], 0, false));
        using var prefetcher = new BatchPrefetcher(new SyntheticDataset(20, failAt: 9), requests, Seed, threads: 2, capacity: 2);
        int taken = 0;
        var error = Assert.Throws<DataLoadException>(() => { while (prefetcher.TryTake(out _)) taken++; });

        Assert.True(taken <= 2, $"{taken} batches taken before the error, which is in the third");
        Assert.Contains("synthetic test set: reading sample 9", error.Message);
        Assert.Contains("'/data/broken.bin': record 9 is corrupt", error.Message);
        Assert.IsType<DataFormatException>(error.InnerException);
        // The error stays: a retry does not hang.
        Assert.Throws<DataLoadException>(() => prefetcher.TryTake(out _));
    }

    [Fact]
    public void DisposeReturnsPromptlyWhileTheProducersAreBlockedOnAFullQueue()
    {
        var dataset = new SyntheticDataset(1000);
        var prefetcher = new BatchPrefetcher(dataset, Requests(1000, 10, 100), Seed, threads: 2, capacity: 1);
        Assert.True(SpinWait.SpinUntil(() => dataset.ReadsStarted == 10, TimeSpan.FromSeconds(10)));
        Thread.Sleep(50);

        var clock = Stopwatch.StartNew();
        prefetcher.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"Dispose took {clock.Elapsed}");
        Assert.Equal(10, dataset.ReadsStarted);
        Assert.Throws<ObjectDisposedException>(() => prefetcher.TryTake(out _));
    }

    [Fact]
    public void DisposeReturnsPromptlyWhenTheConsumerStopsEarlyDuringSlowReads()
    {
        var dataset = new SyntheticDataset(1000, delayMilliseconds: 30);
        var prefetcher = new BatchPrefetcher(dataset, Requests(1000, 10, 100), Seed, threads: 3, capacity: 4);
        Assert.True(prefetcher.TryTake(out _));

        var clock = Stopwatch.StartNew();
        prefetcher.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"Dispose took {clock.Elapsed}");
    }

    [Fact]
    public void TheConsumersWaitForDataIsMeasured()
    {
        var dataset = new SyntheticDataset(100, delayMilliseconds: 100);
        using var prefetcher = new BatchPrefetcher(dataset, Requests(100, 5, 2), Seed, threads: 1, capacity: 2);
        Assert.True(prefetcher.TryTake(out _));
        // Five reads of 100 ms each on one thread before the first batch is ready; the reads start at construction, so
        // part of them may pass before this thread asks.
        Assert.True(prefetcher.WaitTime >= TimeSpan.FromMilliseconds(300), $"waited {prefetcher.WaitTime}");
    }

    [Fact]
    public void NoRequestsMeansNoBatches()
    {
        using var prefetcher = new BatchPrefetcher(new SyntheticDataset(10), [], Seed, threads: 2, capacity: 2);
        Assert.False(prefetcher.TryTake(out _));
    }
}
