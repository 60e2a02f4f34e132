using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CondenseCluster.Shared.Comm.Wire;
using Google.Protobuf;
using Grpc.Core;

[assembly: InternalsVisibleTo("CondenseCluster.Tests")]

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// One RingMessage of ring.proto with its payload as floats: a slice of the sender's own buffer when it goes out (sent
/// as float32 or half floats, <see cref="Precision"/>), an array from <see cref="ArrayPool{T}.Shared"/> when it comes
/// in, which <see cref="Release"/> hands back.
/// </summary>
sealed class RingFrame
{
    float[]? rented;

    public long Generation { get; init; }
    public long Operation { get; init; }
    public RingPhase Phase { get; init; }
    public int Step { get; init; }
    public int Chunk { get; init; }
    public long Offset { get; init; }
    public ReadOnlyMemory<float> Payload { get; private init; }
    public WirePrecision Precision { get; private init; }

    public static RingFrame Outgoing(long generation, long operation, RingSlice slice, ReadOnlyMemory<float> payload,
        WirePrecision precision = WirePrecision.Float32) => new()
    {
        Generation = generation, Operation = operation, Phase = slice.Phase, Step = slice.Step, Chunk = slice.Chunk,
        Offset = slice.Offset, Payload = payload, Precision = precision,
    };

    /// <summary>A received frame owns <paramref name="rented"/>; its first <paramref name="length"/> values are the payload.</summary>
    public static RingFrame Incoming(long generation, long operation, RingPhase phase, int step, int chunk, long offset, float[] rented, int length) =>
        new()
        {
            Generation = generation, Operation = operation, Phase = phase, Step = step, Chunk = chunk, Offset = offset,
            Payload = rented.AsMemory(0, length), rented = rented,
        };

    /// <summary>The payload is no longer read: a received frame returns its array to the pool. A frame never released is only garbage.</summary>
    public void Release()
    {
        if (rented is { } array)
        {
            rented = null;
            ArrayPool<float>.Shared.Return(array);
        }
    }
}

/// <summary>
/// The data-plane service (ring.proto) declared by hand, so that RingMessage goes through <see cref="Frames"/>: the
/// protobuf wire format of RingMessage, written straight from the sender's floats and read into a pooled array. The
/// generated parser copied every payload into a new byte array, a large-object allocation per message whose fresh
/// pages cost more than the copy itself.
/// </summary>
static class RingWire
{
    const string Service = "condensecluster.comm.RingPeer";

    // Field tags of RingMessage: field number << 3 | wire type (0 varint, 2 length-delimited).
    const uint GenerationTag = 1 << 3, OperationTag = 2 << 3, PhaseTag = 3 << 3, StepTag = 4 << 3, ChunkTag = 5 << 3,
        OffsetTag = 6 << 3, PayloadTag = 7 << 3 | 2, HalfPayloadTag = 11 << 3 | 2, HalfExponentTag = 12 << 3;

    const int MaxVarintBytes = 10;

    static readonly Marshaller<RingFrame> Frames = new(Write, Read);

    public static readonly Method<RingFrame, PushReply> Push =
        new(MethodType.ClientStreaming, Service, "Push", Frames, Proto(PushReply.Parser));

    public static readonly Method<RingFrame, ProbeReply> Probe =
        new(MethodType.ClientStreaming, Service, "Probe", Frames, Proto(ProbeReply.Parser));

    static Marshaller<T> Proto<T>(MessageParser<T> parser) where T : IMessage<T> =>
        Marshallers.Create(message => message.ToByteArray(), parser.ParseFrom);

    public static void Write(RingFrame frame, SerializationContext context)
    {
        var values = frame.Payload.Span;
        bool half = frame.Precision == WirePrecision.Float16;
        int exponent = half ? FloatPayload.HalfExponent(values) : 0;
        int payloadBytes = values.Length * (half ? 2 : sizeof(float));
        Span<byte> header = stackalloc byte[8 * (1 + MaxVarintBytes)];
        int used = 0;
        void Field(uint tag, ulong value, Span<byte> into)
        {
            used += WriteVarint(tag, into[used..]);
            used += WriteVarint(value, into[used..]);
        }
        Field(GenerationTag, (ulong)frame.Generation, header);
        Field(OperationTag, (ulong)frame.Operation, header);
        Field(PhaseTag, (ulong)(long)frame.Phase, header);
        Field(StepTag, (ulong)(long)frame.Step, header);
        Field(ChunkTag, (ulong)(long)frame.Chunk, header);
        Field(OffsetTag, (ulong)frame.Offset, header);
        if (exponent != 0) Field(HalfExponentTag, ZigZag(exponent), header);
        Field(half ? HalfPayloadTag : PayloadTag, (ulong)payloadBytes, header);

        context.SetPayloadLength(used + payloadBytes);
        var writer = context.GetBufferWriter();
        writer.Write(header[..used]);
        if (half)
        {
            FloatPayload.ToHalf(values, exponent, MemoryMarshal.Cast<byte, Half>(writer.GetSpan(payloadBytes)[..payloadBytes]));
            writer.Advance(payloadBytes);
        }
        else writer.Write(MemoryMarshal.AsBytes(values));
        context.Complete();
    }

    public static RingFrame Read(DeserializationContext context)
    {
        var reader = new SequenceReader<byte>(context.PayloadAsReadOnlySequence());
        long generation = 0, operation = 0, offset = 0;
        int phase = 0, step = 0, chunk = 0;
        float[] payload = [];
        int length = 0;
        bool half = false;
        long exponent = 0;
        while (!reader.End)
        {
            ulong tag = ReadVarint(ref reader);
            switch (tag)
            {
                case GenerationTag: generation = (long)ReadVarint(ref reader); break;
                case OperationTag: operation = (long)ReadVarint(ref reader); break;
                case PhaseTag: phase = (int)ReadVarint(ref reader); break;
                case StepTag: step = (int)ReadVarint(ref reader); break;
                case ChunkTag: chunk = (int)ReadVarint(ref reader); break;
                case OffsetTag: offset = (long)ReadVarint(ref reader); break;
                case HalfExponentTag: exponent = UnZigZag(ReadVarint(ref reader)); break;
                case PayloadTag or HalfPayloadTag:
                    half = tag == HalfPayloadTag;
                    int size = half ? 2 : sizeof(float);
                    ulong bytes = ReadVarint(ref reader);
                    if (bytes % (ulong)size != 0 || bytes > (ulong)reader.Remaining)
                        throw new InvalidDataException($"a ring message payload of {bytes} B is not whole {(half ? "half floats" : "floats")} within the message");
                    if (payload.Length > 0) ArrayPool<float>.Shared.Return(payload); // a repeated field: the last one counts
                    length = (int)(bytes / (ulong)size);
                    payload = length == 0 ? [] : ArrayPool<float>.Shared.Rent(length);
                    var wire = reader.UnreadSequence.Slice(0, (long)bytes);
                    if (half) ReadHalves(wire, payload.AsSpan(0, length));
                    else wire.CopyTo(MemoryMarshal.AsBytes(payload.AsSpan(0, length)));
                    reader.Advance((long)bytes);
                    break;
                default: Skip(ref reader, tag); break;
            }
        }
        if (exponent is < FloatPayload.MinHalfExponent or > FloatPayload.MaxHalfExponent)
            throw new InvalidDataException($"a ring message scales its half floats by 2^{exponent}, outside 2^{FloatPayload.MinHalfExponent} … 2^{FloatPayload.MaxHalfExponent}");
        if (half) FloatPayload.ScaleByPowerOfTwo(payload.AsSpan(0, length), (int)exponent);
        return RingFrame.Incoming(generation, operation, (RingPhase)phase, step, chunk, offset, payload, length);
    }

    /// <summary>Half floats from the wire into <paramref name="target"/>, unscaled (the exponent field may come later).</summary>
    static void ReadHalves(ReadOnlySequence<byte> wire, Span<float> target)
    {
        Half[] halves = ArrayPool<Half>.Shared.Rent(target.Length);
        wire.CopyTo(MemoryMarshal.AsBytes(halves.AsSpan(0, target.Length)));
        FloatPayload.FromHalf(halves.AsSpan(0, target.Length), 0, target);
        ArrayPool<Half>.Shared.Return(halves);
    }

    /// <summary>An unknown field, as protobuf requires of a reader of an older schema.</summary>
    static void Skip(ref SequenceReader<byte> reader, ulong tag)
    {
        switch (tag & 7)
        {
            case 0: ReadVarint(ref reader); break;
            case 1: Advance(ref reader, 8); break;
            case 2: Advance(ref reader, ReadVarint(ref reader)); break;
            case 5: Advance(ref reader, 4); break;
            default: throw new InvalidDataException($"ring message field {tag >> 3} has the unsupported wire type {tag & 7}");
        }
    }

    static void Advance(ref SequenceReader<byte> reader, ulong bytes)
    {
        if (bytes > (ulong)reader.Remaining) throw new InvalidDataException("a ring message field runs past the message");
        reader.Advance((long)bytes);
    }

    // sint32's encoding: small magnitudes of either sign take one byte.
    static ulong ZigZag(int value) => (ulong)(uint)((value << 1) ^ (value >> 31));

    static long UnZigZag(ulong value) => (long)(value >> 1) ^ -(long)(value & 1);

    static int WriteVarint(ulong value, Span<byte> into)
    {
        int i = 0;
        for (; value >= 0x80; value >>= 7) into[i++] = (byte)(value | 0x80);
        into[i++] = (byte)value;
        return i;
    }

    static ulong ReadVarint(ref SequenceReader<byte> reader)
    {
        ulong value = 0;
        for (int shift = 0; shift < 7 * MaxVarintBytes; shift += 7)
        {
            if (!reader.TryRead(out byte b)) throw new InvalidDataException("a ring message ends inside a number");
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw new InvalidDataException("a ring message number is longer than 10 bytes");
    }
}
