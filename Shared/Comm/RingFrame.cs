using System.Buffers.Binary;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The fixed header in front of every segment on a ring connection (DESIGN.md §2); the payload follows it at once:
/// <see cref="Count"/> values, float32 or (<see cref="WirePrecision.Float16"/>) half floats times 2^-<see cref="HalfExponent"/>,
/// little-endian. The generation and the ranks are fixed per connection by its handshake (<see cref="RingHello"/>).
/// </summary>
/// <remarks>
/// Layout, 32 bytes: magic "CCRF" · phase u8 · precision u8 · half exponent i8 · payload place u8 (0: it follows, 1:
/// in the sender's shared buffer, <see cref="InSendersBuffer"/>) · step i32 · chunk i32 · operation i64 · offset i32 · count i32.
/// </remarks>
public readonly record struct RingFrame(long Operation, RingPhase Phase, int Step, int Chunk, int Offset, int Count,
    WirePrecision Precision = WirePrecision.Float32, int HalfExponent = 0)
{
    public const int HeaderBytes = 32;
    const uint Magic = 0x46524343; // "CCRF" read as a little-endian u32

    public static RingFrame Of(long operation, RingSlice slice, WirePrecision precision, int halfExponent = 0) =>
        new(operation, slice.Phase, slice.Step, slice.Chunk, slice.Offset, slice.Length, precision, halfExponent);

    public static int ValueBytes(WirePrecision precision) => precision == WirePrecision.Float16 ? 2 : sizeof(float);

    public int PayloadBytes => Count * ValueBytes(Precision);

    /// <summary>The payload stays in the sender's <see cref="SharedFloatBuffer"/>; the connection's shared ring carries where.</summary>
    public bool InSendersBuffer { get; init; }

    /// <summary>Whether this is the frame a rank expects next: the same all-reduce, slice and precision.</summary>
    public bool Carries(long operation, RingSlice slice, WirePrecision precision) =>
        Operation == operation && Phase == slice.Phase && Step == slice.Step && Chunk == slice.Chunk && Offset == slice.Offset
        && Count == slice.Length && Precision == precision;

    public void Write(Span<byte> header)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = (byte)Phase;
        header[5] = (byte)Precision;
        header[6] = (byte)(sbyte)HalfExponent;
        header[7] = InSendersBuffer ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], Step);
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], Chunk);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], Operation);
        BinaryPrimitives.WriteInt32LittleEndian(header[24..], Offset);
        BinaryPrimitives.WriteInt32LittleEndian(header[28..], Count);
    }

    /// <summary>The header in <paramref name="header"/>; <see cref="InvalidDataException"/> naming the field that is not one.</summary>
    public static RingFrame Read(ReadOnlySpan<byte> header)
    {
        if (header.Length < HeaderBytes) throw new InvalidDataException($"a ring frame header has {HeaderBytes} bytes, not {header.Length}");
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(header);
        if (magic != Magic) throw new InvalidDataException($"the bytes 0x{magic:x8} do not start a ring frame: not a peer of this ring, or it lost its place");
        if (header[4] > (byte)RingPhase.AllGather) throw new InvalidDataException($"a ring frame names phase {header[4]}");
        if (header[5] > (byte)WirePrecision.Float16) throw new InvalidDataException($"a ring frame names precision {header[5]}");
        var precision = (WirePrecision)header[5];
        int exponent = (sbyte)header[6];
        if (exponent != 0 && (precision != WirePrecision.Float16 || exponent is < FloatPayload.MinHalfExponent or > FloatPayload.MaxHalfExponent))
            throw new InvalidDataException($"a ring frame of {precision} values scales them by 2^{exponent}");
        if (header[7] > 1) throw new InvalidDataException($"a ring frame's payload place is {header[7]}");
        var frame = new RingFrame(BinaryPrimitives.ReadInt64LittleEndian(header[16..]), (RingPhase)header[4],
            BinaryPrimitives.ReadInt32LittleEndian(header[8..]), BinaryPrimitives.ReadInt32LittleEndian(header[12..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[24..]), BinaryPrimitives.ReadInt32LittleEndian(header[28..]), precision, exponent)
        { InSendersBuffer = header[7] == 1 };
        if (frame.Step < 0 || frame.Chunk < 0 || frame.Offset < 0 || frame.Count < 0 || (long)frame.Offset + frame.Count > Array.MaxLength)
            throw new InvalidDataException($"a ring frame has step {frame.Step}, chunk {frame.Chunk}, offset {frame.Offset}, count {frame.Count}");
        return frame;
    }

    public override string ToString() =>
        $"all-reduce {Operation} {Phase} step {Step} chunk {Chunk} at {Offset} with {Count} values as {Precision}";
}
