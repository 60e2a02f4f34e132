using CondenseCluster.Shared.Data;

namespace CondenseCluster.Tests.Data;

/// <summary>
/// A dataset whose values identify the sample and its augmentation draw, that can be slow or fail on one index, and
/// counts the reads started (for the prefetcher tests).
/// </summary>
sealed class SyntheticDataset(int count, int delayMilliseconds = 0, int failAt = -1) : IImageDataset
{
    int readsStarted;

    public int ReadsStarted => Volatile.Read(ref readsStarted);
    public string Description => "synthetic test set";
    public int Count => count;
    public int NumClasses => 10;
    public int Channels => 2;
    public int Size => 3;

    public int Label(int index) => index % NumClasses;

    public void Read(int index, Span<float> destination, Random? augmentation)
    {
        Interlocked.Increment(ref readsStarted);
        if (delayMilliseconds > 0) Thread.Sleep(delayMilliseconds);
        if (index == failAt) throw new DataFormatException($"'/data/broken.bin': record {index} is corrupt");
        float draw = augmentation is null ? 0 : (float)augmentation.NextDouble();
        for (int i = 0; i < destination.Length; i++) destination[i] = index * 100 + i + draw;
    }
}
