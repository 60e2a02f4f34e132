using System.Buffers.Binary;
using System.IO.Compression;
using SkiaSharp;

namespace CondenseCluster.Tests.Data;

/// <summary>Writes small files in the official formats for the data tests.</summary>
static class DataTestFiles
{
    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static byte[] IdxImages(int count, int rows, int columns, byte[] pixels, int magic = 0x00000803)
    {
        var bytes = new byte[16 + pixels.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), columns);
        pixels.CopyTo(bytes, 16);
        return bytes;
    }

    public static byte[] IdxLabels(byte[] labels)
    {
        var bytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, 0x00000801);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    public static byte[] Gzip(byte[] bytes)
    {
        var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true)) gzip.Write(bytes);
        return output.ToArray();
    }

    /// <summary>CIFAR records: each record's label bytes, then its 3072 pixel bytes.</summary>
    public static byte[] CifarRecords(byte[][] labelBytes, byte[] pixels)
    {
        const int ImageBytes = 3072;
        var output = new MemoryStream();
        for (int i = 0; i < labelBytes.Length; i++)
        {
            output.Write(labelBytes[i]);
            output.Write(pixels, i * ImageBytes, ImageBytes);
        }
        return output.ToArray();
    }

    public static void WriteJpeg(string path, int width, int height, Func<int, int, SKColor> color)
    {
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, color(x, y));
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 100);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, data.ToArray());
    }

    /// <summary>Expected value of torchvision's ToTensor + Normalize.</summary>
    public static float Normalized(byte value, float mean, float std) => (value / 255f - mean) / std;
}
