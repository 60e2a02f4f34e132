using System.Buffers.Binary;
using System.Security.Cryptography;

namespace CondenseCluster.Shared.Storage;

/// <summary>A file that cannot be read back wrong: corrupt, truncated or foreign content is refused with a clear error.</summary>
public sealed class CorruptFileException(string message) : Exception(message);

/// <summary>
/// Container for model files and checkpoints: an 8-byte magic, the body length, the body, and its SHA-256.
/// Written atomically (<see cref="AtomicFile"/>, fsynced before the rename), so a crash mid-write never replaces a good file;
/// verified on read, so a corrupt or truncated file is refused with the reason and the path.
/// </summary>
public static class ChecksummedFile
{
    const int HeaderLength = 16, HashLength = 32;

    public static void Write(string path, ReadOnlySpan<byte> magic, Action<Stream> writeBody)
    {
        if (magic.Length != 8) throw new ArgumentException("magic must be 8 bytes", nameof(magic));
        byte[] magicBytes = magic.ToArray();
        AtomicFile.Write(path, temp =>
        {
            using var file = new FileStream(temp, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
            Span<byte> header = stackalloc byte[HeaderLength];
            magicBytes.CopyTo(header);
            file.Write(header);
            writeBody(file);
            long bodyLength = file.Length - HeaderLength;
            BinaryPrimitives.WriteInt64LittleEndian(header[8..], bodyLength);
            file.Position = 0;
            file.Write(header);

            file.Position = HeaderLength;
            byte[] hash = SHA256.HashData(new BoundedStream(file, bodyLength));
            file.Position = file.Length;
            file.Write(hash);
            file.Flush(flushToDisk: true);
        });
    }

    /// <summary>Verifies the file and returns its body.</summary>
    public static byte[] Read(string path, ReadOnlySpan<byte> magic, string kind)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"{kind} '{path}' does not exist", path); }

        if (bytes.Length < HeaderLength || !bytes.AsSpan(0, 8).SequenceEqual(magic))
            throw new CorruptFileException($"'{path}' is not a {kind} file (wrong magic number at offset 0)");
        long bodyLength = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8));
        long expected = HeaderLength + bodyLength + HashLength;
        if (bodyLength < 0 || bytes.Length != expected)
            throw new CorruptFileException(
                $"{kind} '{path}' is truncated or damaged: its header announces {expected} bytes but the file has {bytes.Length}");
        var body = bytes.AsSpan(HeaderLength, (int)bodyLength);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan((int)(HeaderLength + bodyLength))))
            throw new CorruptFileException($"{kind} '{path}' is corrupt: its SHA-256 checksum does not match its contents");
        return body.ToArray();
    }

    /// <summary>A read-only window of <c>length</c> bytes from the current position, so hashing stops at the body's end.</summary>
    sealed class BoundedStream(Stream inner, long window) : Stream
    {
        long consumed;
        long remaining => window - consumed;
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, (int)Math.Min(count, remaining));
            consumed += n;
            return n;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => window;
        public override long Position { get => consumed; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
