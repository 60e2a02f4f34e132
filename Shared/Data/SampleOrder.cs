namespace CondenseCluster.Shared.Data;

/// <summary>
/// Which samples a step uses, and their augmentation: functions of (seed, epoch, sample index) only, never of the worker
/// that processes them, so any split of a step's micro-batches over workers sees the same data.
/// </summary>
public static class SampleOrder
{
    /// <summary>The epoch's order of the training set: a Fisher–Yates permutation seeded by (seed, epoch).</summary>
    public static int[] Permutation(int count, int seed, int epoch)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        var random = new Random(Mix(seed, epoch, -1));
        for (int i = count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>The generator of one sample's augmentation in one epoch.</summary>
    public static Random Augmentation(int seed, int epoch, int sampleIndex) => new(Mix(seed, epoch, sampleIndex));

    /// <summary>A well-spread 32-bit seed from three integers (SplitMix64 finaliser).</summary>
    public static int Mix(int a, int b, int c)
    {
        ulong z = ((ulong)(uint)a << 32 | (uint)b) ^ ((ulong)(uint)c * 0x9E3779B97F4A7C15UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7fffffff);
    }
}
