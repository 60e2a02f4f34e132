namespace CondenseCluster.Shared.Data;

/// <summary>
/// A view of an 8-bit image in any memory layout: pixel (c, y, x) is at <c>c·ChannelStride + y·RowStride + x·PixelStride</c>.
/// Planar CHW (IDX, CIFAR) and interleaved RGBA (decoded images) go through the same normalising copy.
/// </summary>
public readonly ref struct ByteImage
{
    public ReadOnlySpan<byte> Pixels { get; }
    public int Height { get; }
    public int Width { get; }
    public int ChannelStride { get; }
    public int RowStride { get; }
    public int PixelStride { get; }

    ByteImage(ReadOnlySpan<byte> pixels, int height, int width, int channelStride, int rowStride, int pixelStride)
    {
        Pixels = pixels;
        (Height, Width, ChannelStride, RowStride, PixelStride) = (height, width, channelStride, rowStride, pixelStride);
    }

    /// <summary>Channel planes one after the other (CHW).</summary>
    public static ByteImage Planar(ReadOnlySpan<byte> pixels, int channels, int height, int width)
    {
        if (pixels.Length != channels * height * width)
            throw new ArgumentException($"{pixels.Length} bytes is not a {channels}x{height}x{width} image", nameof(pixels));
        return new(pixels, height, width, height * width, width, 1);
    }

    /// <summary>Pixels with their channels side by side (HWC), <paramref name="bytesPerPixel"/> apart (4 for RGBA).</summary>
    public static ByteImage Interleaved(ReadOnlySpan<byte> pixels, int height, int width, int bytesPerPixel, int rowBytes)
    {
        if (rowBytes < width * bytesPerPixel || pixels.Length < (height - 1) * rowBytes + width * bytesPerPixel)
            throw new ArgumentException($"{pixels.Length} bytes is not a {height}x{width} image of {bytesPerPixel} bytes per pixel and {rowBytes} bytes per row", nameof(pixels));
        return new(pixels, height, width, 1, rowBytes, bytesPerPixel);
    }
}
