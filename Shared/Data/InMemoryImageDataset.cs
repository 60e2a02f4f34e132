namespace CondenseCluster.Shared.Data;

/// <summary>
/// A split held in memory as 8-bit planar (CHW) square images with byte labels (Fashion-MNIST, CIFAR). The source image
/// is placed centred in the Size² output (Fashion-MNIST: 28 in 32, i.e. 2 black pixels each side). With
/// <c>randomCropPadding</c> set, the training transform is RandomCrop(Size, that padding) + horizontal flip; without it
/// there is no training augmentation and <see cref="Read"/> ignores the generator.
/// </summary>
public sealed class InMemoryImageDataset : IImageDataset
{
    readonly ReadOnlyMemory<byte> pixels;
    readonly byte[] labels;
    readonly int sourceSize, imageBytes;
    readonly Normalization normalization;
    readonly int? randomCropPadding;

    public InMemoryImageDataset(string description, ReadOnlyMemory<byte> pixels, byte[] labels, int numClasses,
        int sourceSize, int size, Normalization normalization, int? randomCropPadding)
    {
        Channels = normalization.Channels;
        imageBytes = Channels * sourceSize * sourceSize;
        if (pixels.Length != (long)labels.Length * imageBytes)
            throw new ArgumentException($"{pixels.Length} pixel bytes do not make {labels.Length} images of {Channels}x{sourceSize}x{sourceSize}");
        if (sourceSize > size || (size - sourceSize) % 2 != 0)
            throw new ArgumentException($"a {sourceSize}x{sourceSize} image cannot be centred in {size}x{size}");
        (Description, this.pixels, this.labels, NumClasses, this.sourceSize, Size, this.normalization, this.randomCropPadding) =
            (description, pixels, labels, numClasses, sourceSize, size, normalization, randomCropPadding);
    }

    public string Description { get; }
    public int Count => labels.Length;
    public int NumClasses { get; }
    public int Channels { get; }
    public int Size { get; }

    public int Label(int index)
    {
        CheckIndex(index);
        return labels[index];
    }

    public void Read(int index, Span<float> destination, Random? augmentation)
    {
        CheckIndex(index);
        var image = ByteImage.Planar(pixels.Span.Slice(index * imageBytes, imageBytes), Channels, sourceSize, sourceSize);
        int centre = (Size - sourceSize) / 2;
        var (offsetY, offsetX, flip) = augmentation is not null && randomCropPadding is int padding
            ? ImageTransforms.RandomCropAndFlip(augmentation, padding)
            : (0, 0, false);
        ImageTransforms.WriteNormalized(image, centre + offsetY, centre + offsetX, flip, normalization, destination, Size);
    }

    void CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
    }
}
