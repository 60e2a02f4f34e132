using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace CondenseCluster.Shared.Comm;

/// <summary>What a connection to a ring listener is for.</summary>
public enum RingConnectionKind : byte
{
    /// <summary>A rank's connection to its right neighbour for one ring generation.</summary>
    Ring = 1,
    /// <summary>Raw bytes to measure the transport: a count, that many bytes, the count echoed back.</summary>
    Probe = 2,
}

/// <summary>
/// The first bytes on every connection to a ring listener: who connects, for which ring. The listener accepts a ring
/// connection only from the left neighbour of its own current ring: same generation, same members in the same order
/// (<see cref="RingDigest"/>), the rank before its own.
/// </summary>
/// <remarks>Layout, 32 bytes: "CCRING" · version u8 · kind u8 · generation i64 · ring digest u64 · size i32 · sender rank i32.</remarks>
public readonly record struct RingHello(RingConnectionKind Kind, long Generation, ulong Digest, int Size, int SenderRank)
{
    public const int Bytes = 32;
    public const byte Version = 3;
    static ReadOnlySpan<byte> Magic => "CCRING"u8;

    public static RingHello Probe => new(RingConnectionKind.Probe, 0, 0, 0, 0);

    /// <summary>The rank this hello's sender sends to.</summary>
    public int ReceiverRank => (SenderRank + 1) % Size;

    public void Write(Span<byte> into)
    {
        Magic.CopyTo(into);
        into[6] = Version;
        into[7] = (byte)Kind;
        BinaryPrimitives.WriteInt64LittleEndian(into[8..], Generation);
        BinaryPrimitives.WriteUInt64LittleEndian(into[16..], Digest);
        BinaryPrimitives.WriteInt32LittleEndian(into[24..], Size);
        BinaryPrimitives.WriteInt32LittleEndian(into[28..], SenderRank);
    }

    /// <summary>The hello in <paramref name="bytes"/>; <see cref="InvalidDataException"/> when it is not one this version speaks.</summary>
    public static RingHello Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < Bytes || !bytes[..Magic.Length].SequenceEqual(Magic))
            throw new InvalidDataException("the connection did not start with a ring handshake");
        if (bytes[6] != Version) throw new InvalidDataException($"the peer speaks ring protocol version {bytes[6]}, this worker {Version}: run one version everywhere");
        var hello = new RingHello((RingConnectionKind)bytes[7], BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[16..]), BinaryPrimitives.ReadInt32LittleEndian(bytes[24..]),
            BinaryPrimitives.ReadInt32LittleEndian(bytes[28..]));
        bool valid = hello.Kind switch
        {
            RingConnectionKind.Ring => hello.Generation >= 0 && hello.Size >= 2 && hello.SenderRank >= 0 && hello.SenderRank < hello.Size,
            RingConnectionKind.Probe => true,
            _ => false,
        };
        return valid ? hello : throw new InvalidDataException($"the ring handshake is not valid: {hello}");
    }
}

/// <summary>What a listener answers a hello.</summary>
public enum RingVerdict
{
    Accepted = 0,
    /// <summary>The listener's ring is of a newer generation: the sender's ring is over.</summary>
    Stale = 1,
    /// <summary>Same generation, another ring: other members, another size, or the sender is not the left neighbour.</summary>
    Foreign = 2,
    /// <summary>The listener already has its left neighbour for that generation.</summary>
    Duplicate = 3,
    /// <summary>The listener is shutting down.</summary>
    Closing = 4,
}

/// <summary>The listener's answer to a hello. Layout, 16 bytes: "CCOK" · verdict i32 · the listener's newest generation i64.</summary>
public readonly record struct RingWelcome(RingVerdict Verdict, long Generation)
{
    public const int Bytes = 16;
    static ReadOnlySpan<byte> Magic => "CCOK"u8;

    public void Write(Span<byte> into)
    {
        Magic.CopyTo(into);
        BinaryPrimitives.WriteInt32LittleEndian(into[4..], (int)Verdict);
        BinaryPrimitives.WriteInt64LittleEndian(into[8..], Generation);
    }

    public static RingWelcome Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < Bytes || !bytes[..Magic.Length].SequenceEqual(Magic)) throw new InvalidDataException("the listener did not answer with a ring welcome");
        int verdict = BinaryPrimitives.ReadInt32LittleEndian(bytes[4..]);
        if (verdict is < 0 or > (int)RingVerdict.Closing) throw new InvalidDataException($"the listener answered the unknown verdict {verdict}");
        return new((RingVerdict)verdict, BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]));
    }

    /// <summary>Why a ring connection was refused, for the sender's error.</summary>
    public string Explain(long generation) => Verdict switch
    {
        RingVerdict.Stale => $"it is at ring generation {Generation}, newer than {generation}",
        RingVerdict.Foreign => $"its ring of generation {Generation} has other members or another order",
        RingVerdict.Duplicate => $"it already has a left neighbour in generation {generation}",
        RingVerdict.Closing => "it is shutting down",
        _ => "accepted",
    };
}

/// <summary>
/// What the sender of a ring connection says right after the welcome: where its frames' payloads travel, after each
/// header on the socket, or through a shared-memory file (<see cref="SharedPayloadRing"/>).
/// </summary>
/// <remarks>Layout: "CCPR" · route u8 (0: on the socket, 1: shared memory) · path length u16 · the path in UTF-8.</remarks>
public static class RingPayloadRoute
{
    public const int HeaderBytes = 7, MaxPathBytes = 255;
    const byte OnSocket = 0, SharedMemory = 1;
    static ReadOnlySpan<byte> Magic => "CCPR"u8;

    /// <summary>The route for payloads through the file at <paramref name="sharedPath"/>, or on the socket when null.</summary>
    public static byte[] Encode(string? sharedPath)
    {
        byte[] path = sharedPath is null ? [] : Encoding.UTF8.GetBytes(sharedPath);
        if (path.Length > MaxPathBytes) throw new ArgumentException($"the path {sharedPath} is longer than {MaxPathBytes} bytes");
        var bytes = new byte[HeaderBytes + path.Length];
        Magic.CopyTo(bytes);
        bytes[4] = sharedPath is null ? OnSocket : SharedMemory;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(5), (ushort)path.Length);
        path.CopyTo(bytes, HeaderBytes);
        return bytes;
    }

    /// <summary>How many path bytes follow <paramref name="header"/>; <see cref="InvalidDataException"/> when it is no route.</summary>
    public static int PathBytes(ReadOnlySpan<byte> header)
    {
        if (!header[..Magic.Length].SequenceEqual(Magic)) throw new InvalidDataException("the connection did not say where its payloads travel");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(header[5..]);
        bool valid = header[4] switch
        {
            OnSocket => length == 0,
            SharedMemory => length is > 0 and <= MaxPathBytes,
            _ => false,
        };
        return valid ? length : throw new InvalidDataException($"the payload route {header[4]} with a path of {length} bytes is not one this version speaks");
    }
}

/// <summary>Identifies a ring by its members in order: ranks configured with other endpoint lists do not connect.</summary>
public static class RingDigest
{
    public static ulong Of(IReadOnlyList<string> endpoints) =>
        BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', endpoints))));
}
