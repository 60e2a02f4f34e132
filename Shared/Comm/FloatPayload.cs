using System.Numerics;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Arithmetic on float32 payloads (little-endian on the wire, the byte order of every platform TorchSharp runs on;
/// <see cref="RingWire"/> reads and writes them).
/// </summary>
public static class FloatPayload
{
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
}
