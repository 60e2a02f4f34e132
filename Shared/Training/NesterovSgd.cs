using TorchSharp;
using CondenseCluster.Shared.Model;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// SGD with Nesterov momentum and weight decay on every parameter, the same update as torch.optim.SGD
/// (d = g + wd·p; buf = μ·buf + d; p -= lr·(d + μ·buf)). Kept here so its momentum buffers are plain tensors
/// that checkpoints and joining workers can carry.
/// </summary>
public sealed class NesterovSgd : IDisposable
{
    readonly Tensor[] parameters;
    // Kept alive for the native calls (a temporary Scalar can be finalized during one).
    readonly Scalar momentum, weightDecay;

    public NesterovSgd(IEnumerable<Tensor> parameters, double momentum = 0.9, double weightDecay = 1e-4)
    {
        this.parameters = parameters.ToArray();
        Momentum = momentum;
        WeightDecay = weightDecay;
        this.momentum = momentum.ToScalar();
        this.weightDecay = weightDecay.ToScalar();
        Buffers = this.parameters.Select(p => torch.zeros_like(p).DetachFromDisposeScope()).ToArray();
    }

    public double Momentum { get; }
    public double WeightDecay { get; }

    /// <summary>One momentum buffer per parameter, in parameter order (zeros before the first step, as PyTorch's first step implies).</summary>
    public Tensor[] Buffers { get; }

    public void Step(double learningRate)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var step = (-learningRate).ToScalar();
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            var d = p.grad!.add(p, alpha: weightDecay);
            Buffers[i].mul_(momentum).add_(d, alpha: KeptScalars.One);
            d.add_(Buffers[i], alpha: momentum);
            p.add_(d, alpha: step);
        }
    }

    public void Dispose()
    {
        foreach (var b in Buffers) b.Dispose();
        momentum.Dispose();
        weightDecay.Dispose();
    }
}
