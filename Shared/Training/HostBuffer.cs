using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Packs float32 tensors (on any device) into one host array and back: the form the ring all-reduces, so gradients,
/// BatchNorm statistics and importance sums each cross the data plane as one buffer.
/// </summary>
public static class HostBuffer
{
    public static long Length(IReadOnlyList<Tensor> tensors) => tensors.Sum(t => t.numel());

    /// <summary>Copies the tensors, in order, into <paramref name="host"/> (at least <see cref="Length"/> long).</summary>
    public static void Gather(IReadOnlyList<Tensor> tensors, Span<float> host)
    {
        long offset = 0;
        foreach (var tensor in tensors)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            TensorSpans.Floats(cpu).CopyTo(host[(int)offset..]);
            offset += tensor.numel();
        }
    }

    /// <summary>Copies <paramref name="host"/> back into the tensors, in order, scaled by <paramref name="factor"/>.</summary>
    public static void Scatter(ReadOnlySpan<float> host, IReadOnlyList<Tensor> tensors, double factor = 1)
    {
        using var _ = torch.no_grad();
        using var scale = factor.ToScalar();
        long offset = 0;
        foreach (var tensor in tensors)
        {
            long n = tensor.numel();
            var values = host.Slice((int)offset, (int)n);
            if (tensor.device_type == DeviceType.CPU && tensor.is_contiguous())
                MemoryMarshal.AsBytes(values).CopyTo(tensor.bytes); // in place: no staging tensor on the step's path
            else
            {
                using var staged = torch.tensor(values.ToArray(), tensor.shape).to(tensor.device);
                tensor.copy_(staged);
            }
            if (factor != 1) tensor.mul_(scale);
            offset += n;
        }
    }
}
