using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// All gradients in one flat float32 tensor: each parameter's <c>.grad</c> is a view into it, so backward accumulates
/// straight into the buffer that the all-reduce sends, and zeroing or scaling is one operation.
/// </summary>
public sealed class GradientBuffer : IDisposable
{
    readonly Tensor[] parameters;

    public GradientBuffer(IEnumerable<Tensor> parameters, Device device)
    {
        this.parameters = parameters.ToArray();
        Length = this.parameters.Sum(p => p.numel());
        Flat = torch.zeros(Length, device: device).DetachFromDisposeScope();
        Attach();
    }

    public long Length { get; }
    public Tensor Flat { get; }

    /// <summary>Zeroes the gradients; the views stay attached (torch's zero_grad would detach them).</summary>
    public void Zero() => Flat.zero_();

    public void Scale(double factor)
    {
        using var _ = torch.no_grad();
        using var scalar = factor.ToScalar();
        Flat.mul_(scalar);
    }

    /// <summary>The global L2 norm of all gradients; not finite when any value is NaN or ±∞.</summary>
    public double Norm()
    {
        using var norm = Flat.norm();
        return norm.item<float>();
    }

    void Attach()
    {
        long offset = 0;
        foreach (var p in parameters)
        {
            long n = p.numel();
            p.grad = Flat.narrow(0, offset, n).view(p.shape);
            offset += n;
        }
    }

    public void Dispose() => Flat.Dispose();
}
