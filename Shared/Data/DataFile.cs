using System.Buffers.Binary;
using System.IO.Compression;

namespace CondenseCluster.Shared.Data;

/// <summary>Reads a whole data file, plain or gzip-compressed (by its <c>.gz</c> extension), refusing corrupt or truncated gzip.</summary>
public static class DataFile
{
    public static bool IsGzip(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);

    public static byte[] ReadAllBytes(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        return IsGzip(path) ? Decompress(path, bytes) : bytes;
    }

    static byte[] Decompress(string path, byte[] compressed)
    {
        // .NET checks the deflate data and the CRC, but a gzip file cut short just decompresses to less data without
        // an error; comparing with the length in the trailer (ISIZE, the last 4 bytes, modulo 2^32) catches that. The
        // official files are single-member gzip, for which the trailer holds the whole length.
        const int MinimumGzipLength = 18;
        if (compressed.Length < MinimumGzipLength)
            throw new DataFormatException($"'{path}' is not a gzip file: {compressed.Length} bytes, less than a gzip header and trailer ({MinimumGzipLength} bytes)");

        var output = new MemoryStream();
        using (var gzip = new GZipStream(new MemoryStream(compressed), CompressionMode.Decompress))
        {
            byte[] chunk = new byte[1 << 16];
            try
            {
                int read;
                while ((read = gzip.Read(chunk)) > 0) output.Write(chunk, 0, read);
            }
            catch (InvalidDataException e)
            {
                throw new DataFormatException($"'{path}' is a corrupt gzip file: decompression failed after {output.Length} bytes of output ({e.Message})");
            }
        }

        uint recordedLength = BinaryPrimitives.ReadUInt32LittleEndian(compressed.AsSpan(compressed.Length - 4));
        if ((uint)output.Length != recordedLength)
            throw new DataFormatException(
                $"'{path}' is a truncated or corrupt gzip file: it decompresses to {output.Length} bytes but its trailer records {recordedLength} (modulo 2^32)");
        return output.ToArray();
    }
}
