using TorchSharp;
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

    public NesterovSgd(IEnumerable<Tensor> parameters, double momentum = 0.9, double weightDecay = 1e-4)
    {
        this.parameters = parameters.ToArray();
        Momentum = momentum;
        WeightDecay = weightDecay;
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
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            var d = p.grad!.add(p, alpha: WeightDecay);
            Buffers[i].mul_(Momentum).add_(d);
            d.add_(Buffers[i], alpha: Momentum);
            p.add_(d, alpha: -learningRate);
        }
    }

    public void Dispose()
    {
        foreach (var b in Buffers) b.Dispose();
    }
}
