using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>A CPU tensor's memory as a span, for the C# kernels that read and write it in place.</summary>
public static class TensorSpans
{
    /// <summary>
    /// Whether the kernels can take this tensor: contiguous float32 on the CPU, its bytes within a span's reach
    /// (<see cref="Tensor.bytes"/> is a span of bytes, so the limit is int.MaxValue bytes).
    /// </summary>
    public static bool FitsCpuKernel(Tensor t) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous() && t.numel() * sizeof(float) <= int.MaxValue;

    public static Span<float> Floats(Tensor t) => MemoryMarshal.Cast<byte, float>(t.bytes);

    public static Span<long> Longs(Tensor t) => MemoryMarshal.Cast<byte, long>(t.bytes);
}
