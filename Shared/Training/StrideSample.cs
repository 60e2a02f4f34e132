namespace CondenseCluster.Shared.Training;

/// <summary>
/// A uniform sample of a sequence of any length in bounded memory, for what a long job keeps per step (medians, curves):
/// every item until <c>capacity</c> are kept, then every second one is dropped and only every second one after is
/// taken, and so on, so the sample always holds every stride-th item from the first (stride a power of two) and at
/// most <c>capacity</c> of them. The newest item is kept apart, so that a curve drawn from it ends where the run is.
/// </summary>
public sealed class StrideSample<T>
{
    readonly int capacity;
    readonly List<T> kept = [];
    long stride = 1;
    T newest = default!;

    /// <param name="capacity">how many items are kept at most; even, so that halving keeps the stride's items exactly</param>
    public StrideSample(int capacity)
    {
        if (capacity < 2 || capacity % 2 != 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "an even number of at least 2");
        this.capacity = capacity;
    }

    /// <summary>How many items were added in all.</summary>
    public long Count { get; private set; }

    /// <summary>The kept items, every stride-th one added, oldest first.</summary>
    public IReadOnlyList<T> Items => kept;

    /// <summary>The kept items followed by the newest one added when it is not among them.</summary>
    public IReadOnlyList<T> ItemsWithNewest => Count > 0 && (Count - 1) % stride != 0 ? [.. kept, newest] : kept;

    public void Add(T item)
    {
        if (Count++ % stride == 0)
        {
            kept.Add(item);
            if (kept.Count == capacity) Halve();
        }
        newest = item;
    }

    public void Clear()
    {
        kept.Clear();
        (stride, Count, newest) = (1, 0, default!);
    }

    void Halve()
    {
        for (int i = 0; i < kept.Count / 2; i++) kept[i] = kept[2 * i];
        kept.RemoveRange(kept.Count / 2, kept.Count - kept.Count / 2);
        stride *= 2;
    }
}
