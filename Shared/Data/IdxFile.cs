using System.Buffers.Binary;

namespace CondenseCluster.Shared.Data;

/// <summary>Images of an IDX file: <see cref="Count"/> planar images of Rows x Columns bytes, back to back.</summary>
public sealed record IdxImages(ReadOnlyMemory<byte> Pixels, int Count, int Rows, int Columns);

/// <summary>
/// The IDX format of (Fashion-)MNIST, plain or gzip: a big-endian header (magic number, then one 32-bit size per
/// dimension) followed by unsigned bytes. Anything that does not match the header exactly is refused.
/// </summary>
public static class IdxFile
{
    /// <summary>Unsigned bytes, 3 dimensions (count, rows, columns).</summary>
    public const int ImagesMagic = 0x00000803;
    /// <summary>Unsigned bytes, 1 dimension (count).</summary>
    public const int LabelsMagic = 0x00000801;

    public static IdxImages ReadImages(string path)
    {
        const int HeaderLength = 16;
        byte[] bytes = ReadWithHeader(path, ImagesMagic, HeaderLength, "images");
        int count = Dimension(path, bytes, 1, "image count"), rows = Dimension(path, bytes, 2, "rows"), columns = Dimension(path, bytes, 3, "columns");
        CheckLength(path, bytes.Length, HeaderLength, count, (long)rows * columns, $"{count} images of {rows}x{columns}", "image");
        return new IdxImages(bytes.AsMemory(HeaderLength), count, rows, columns);
    }

    /// <summary>The labels, each checked to lie in 0..numClasses−1.</summary>
    public static byte[] ReadLabels(string path, int numClasses)
    {
        const int HeaderLength = 8;
        byte[] bytes = ReadWithHeader(path, LabelsMagic, HeaderLength, "labels");
        int count = Dimension(path, bytes, 1, "label count");
        CheckLength(path, bytes.Length, HeaderLength, count, 1, $"{count} labels", "label");
        byte[] labels = bytes[HeaderLength..];
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= numClasses)
                throw new DataFormatException(
                    $"'{path}': label {labels[i]} of record {i} (offset {HeaderLength + i}) is out of range; labels must lie in 0..{numClasses - 1}");
        return labels;
    }

    static byte[] ReadWithHeader(string path, int magic, int headerLength, string content)
    {
        byte[] bytes = DataFile.ReadAllBytes(path);
        if (bytes.Length < 4)
            throw new DataFormatException($"'{path}' is truncated: {bytes.Length} bytes{Decompressed(path)}, too short for an IDX header ({headerLength} bytes)");
        int found = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (found != magic)
            throw new DataFormatException($"'{path}': wrong magic number 0x{found:X8} at offset 0, expected 0x{magic:X8} (IDX {content})");
        if (bytes.Length < headerLength)
            throw new DataFormatException($"'{path}' is truncated: {bytes.Length} bytes{Decompressed(path)}, too short for the IDX {content} header ({headerLength} bytes)");
        return bytes;
    }

    static int Dimension(string path, byte[] bytes, int index, string name)
    {
        int value = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 * index));
        if (value < 0 || (value == 0 && index > 1))
            throw new DataFormatException($"'{path}': invalid {name} {value} at offset {4 * index}");
        return value;
    }

    static void CheckLength(string path, long actual, int headerLength, int count, long recordLength, string declared, string record)
    {
        long expected = headerLength + count * recordLength;
        if (actual < expected)
        {
            long complete = (actual - headerLength) / recordLength;
            throw new DataFormatException(
                $"'{path}' is truncated: its header declares {declared} ({expected} bytes), but it has {actual} bytes{Decompressed(path)}; " +
                $"{record} record {complete} (offset {headerLength + complete * recordLength}) is incomplete");
        }
        if (actual > expected)
            throw new DataFormatException(
                $"'{path}' has {actual - expected} bytes after the {declared} its header declares (from offset {expected}); it is not a consistent IDX file");
    }

    static string Decompressed(string path) => DataFile.IsGzip(path) ? " when decompressed" : "";
}
