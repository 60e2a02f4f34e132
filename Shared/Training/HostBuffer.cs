using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Packs float32 tensors (on any device) into one host array and back: the form the ring all-reduces, so gradients,
/// BatchNorm statistics and importance sums each cross the data plane as one buffer.
/// </summary>
public static class HostBuffer
{
    public static long Length(IReadOnlyList<Tensor> tensors) => tensors.Sum(t => t.numel());

    /// <summary>Copies the tensors, in order, into <paramref name="host"/> (at least <see cref="Length"/> long).</summary>
    public static void Gather(IReadOnlyList<Tensor> tensors, float[] host)
    {
        long offset = 0;
        foreach (var tensor in tensors)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            cpu.data<float>().CopyTo(host, (int)offset);
            offset += tensor.numel();
        }
    }

    /// <summary>Copies <paramref name="host"/> back into the tensors, in order, scaled by <paramref name="factor"/>.</summary>
    public static void Scatter(float[] host, IReadOnlyList<Tensor> tensors, double factor = 1)
    {
        using var _ = torch.no_grad();
        using var scale = factor.ToScalar();
        long offset = 0;
        foreach (var tensor in tensors)
        {
            long n = tensor.numel();
            using var values = torch.tensor(host.AsSpan((int)offset, (int)n).ToArray(), tensor.shape).to(tensor.device);
            if (factor != 1) values.mul_(scale);
            tensor.copy_(values);
            offset += n;
        }
    }
}
