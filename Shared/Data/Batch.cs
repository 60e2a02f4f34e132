namespace CondenseCluster.Shared.Data;

/// <summary>One batch to assemble: the dataset indices of its samples, the epoch (for their augmentation) and whether to augment.</summary>
public sealed record BatchRequest(int[] Indices, int Epoch, bool Augment);

/// <summary>An assembled batch: <see cref="Count"/> images as N·C·H·W contiguous floats and their labels.</summary>
public sealed class Batch(BatchRequest request, float[] images, long[] labels)
{
    public BatchRequest Request { get; } = request;
    public float[] Images { get; } = images;
    public long[] Labels { get; } = labels;
    public int Count => Labels.Length;
}
