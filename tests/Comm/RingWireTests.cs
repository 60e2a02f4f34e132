using System.Buffers;
using System.Runtime.InteropServices;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Comm.Wire;
using Google.Protobuf;
using Grpc.Core;
using Xunit;

namespace CondenseCluster.Tests.Comm;

/// <summary>The hand-written marshaller speaks ring.proto's RingMessage, byte for byte with the generated code.</summary>
public class RingWireTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1000)]
    public void WhatItWritesParsesAsTheProtoMessage(int floats)
    {
        float[] values = [.. Enumerable.Range(0, floats).Select(i => i * 0.5f - 7)];
        var slice = new RingSlice(RingPhase.AllGather, 3, 2, 123_456, floats);
        var parsed = RingMessage.Parser.ParseFrom(Serialize(RingFrame.Outgoing(-5, long.MaxValue, slice, values)));
        Assert.Equal(-5, parsed.Generation);
        Assert.Equal(long.MaxValue, parsed.Operation);
        Assert.Equal((RingPhase.AllGather, 3, 2, 123_456L), (parsed.Phase, parsed.Step, parsed.Chunk, parsed.Offset));
        Assert.Equal(values, MemoryMarshal.Cast<byte, float>(parsed.Payload.Span).ToArray());
    }

    [Fact]
    public void WhatTheProtoMessageWritesItReadsIntoPooledFloats()
    {
        float[] values = [1.5f, -2, float.Epsilon, float.NaN];
        var message = new RingMessage
        {
            Generation = 7, Operation = -1, Phase = RingPhase.ReduceScatter, Step = -2, Chunk = 1, Offset = 4,
            Payload = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
        };
        var frame = Deserialize(message.ToByteArray());
        Assert.Equal((7L, -1L, RingPhase.ReduceScatter, -2, 1, 4L), (frame.Generation, frame.Operation, frame.Phase, frame.Step, frame.Chunk, frame.Offset));
        Assert.Equal(values, frame.Payload.ToArray());
        frame.Release();
        frame.Release(); // a second release must not hand the array back twice
    }

    [Fact]
    public void UnknownFieldsAreSkippedAndBrokenPayloadsRefused()
    {
        byte[] known = new RingMessage { Step = 1 }.ToByteArray();
        byte[] withUnknown = [.. known, 8 << 3 | 2, 2, 0xAA, 0xBB, 9 << 3 | 5, 1, 2, 3, 4, 10 << 3, 0x96, 0x01];
        Assert.Equal(1, Deserialize(withUnknown).Step);
        Assert.Throws<InvalidDataException>(() => Deserialize([7 << 3 | 2, 3, 1, 2, 3])); // not whole floats
        Assert.Throws<InvalidDataException>(() => Deserialize([7 << 3 | 2, 8, 1, 2, 3, 4])); // runs past the end
        Assert.Throws<InvalidDataException>(() => Deserialize([1 << 3, 0x80])); // a number cut off
    }

    [Fact]
    public void AHalfFrameCarriesScaledHalvesThatReadBackAsTheRoundedValues()
    {
        float[] values = [.. Enumerable.Range(0, 1000).Select(i => (i - 500) * 1234.567f)]; // up to 6.2e5: beyond a half
        var slice = new RingSlice(RingPhase.ReduceScatter, 0, 1, 8, values.Length);
        byte[] bytes = Serialize(RingFrame.Outgoing(2, 3, slice, values, WirePrecision.Float16));
        var parsed = RingMessage.Parser.ParseFrom(bytes);
        Assert.True(parsed.Payload.IsEmpty);
        Assert.Equal(2 * values.Length, parsed.HalfPayload.Length);
        Assert.Equal(FloatPayload.HalfExponent(values), parsed.HalfExponent);
        Assert.True(parsed.HalfExponent > 0);

        float[] rounded = [.. values];
        FloatPayload.RoundThroughHalf(rounded);
        var frame = Deserialize(bytes);
        Assert.Equal(rounded, frame.Payload.ToArray());
        frame.Release();

        Assert.Throws<InvalidDataException>(() => Deserialize([11 << 3 | 2, 3, 1, 2, 3])); // not whole halves
        Assert.Throws<InvalidDataException>(() => Deserialize([12 << 3, 0xE4, 0x01, 11 << 3 | 2, 2, 0, 0])); // 2^114: beyond float32
    }

    static byte[] Serialize(RingFrame frame)
    {
        var context = new TestSerializationContext();
        RingWire.Write(frame, context);
        return context.Written.WrittenSpan.ToArray();
    }

    static RingFrame Deserialize(byte[] bytes) => RingWire.Read(new TestDeserializationContext(bytes));

    sealed class TestSerializationContext : SerializationContext
    {
        public ArrayBufferWriter<byte> Written { get; } = new();
        public override void Complete(byte[] payload) => Written.Write(payload);
        public override IBufferWriter<byte> GetBufferWriter() => Written;
        public override void SetPayloadLength(int payloadLength) { }
        public override void Complete() { }
    }

    sealed class TestDeserializationContext(byte[] bytes) : DeserializationContext
    {
        public override int PayloadLength => bytes.Length;
        public override byte[] PayloadAsNewBuffer() => [.. bytes];
        public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(bytes);
    }
}
