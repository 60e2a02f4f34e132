using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using Google.Protobuf;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Float32 slices as protobuf bytes (little-endian, the byte order of every platform TorchSharp runs on). Outgoing
/// slices are wrapped, not copied: gRPC serializes a message before its write completes, and the ring never writes a
/// chunk while it is being sent.
/// </summary>
public static class FloatPayload
{
    public static ByteString Wrap(Memory<float> floats) =>
        UnsafeByteOperations.UnsafeWrap(new FloatBytes(floats).Memory);

    public static ReadOnlySpan<float> Floats(ByteString payload) => MemoryMarshal.Cast<byte, float>(payload.Span);

    /// <summary>target[i] += source[i]; elementwise, so vectorizing does not change a single bit of the result.</summary>
    public static void AddTo(ReadOnlySpan<float> source, Span<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"{source.Length} values for {target.Length} places");
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i <= target.Length - Vector<float>.Count; i += Vector<float>.Count)
                (new Vector<float>(target[i..]) + new Vector<float>(source[i..])).CopyTo(target[i..]);
        for (; i < target.Length; i++) target[i] += source[i];
    }

    /// <summary>The bytes of float memory, without a copy.</summary>
    sealed class FloatBytes(Memory<float> floats) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(floats.Span);

        // Pinning needs a float boundary: the handle then comes from the float memory itself and releases it.
        public override MemoryHandle Pin(int elementIndex = 0) =>
            elementIndex % sizeof(float) == 0
                ? floats[(elementIndex / sizeof(float))..].Pin()
                : throw new ArgumentOutOfRangeException(nameof(elementIndex), "float payloads are pinned at float boundaries");

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
