using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>Small configurations that keep tests fast.</summary>
static class TinyModels
{
    /// <summary>The configuration of the official reference vectors: 3 blocks of 2 layers, growth 4-8-16, G = C = 4.</summary>
    public static CondenseNetConfig Reference { get; } = new()
    {
        Stages = [2, 2, 2], Growth = [4, 8, 16], InChannels = 3, InputSize = 32, NumClasses = 10,
    };

    public static CondenseNetConfig Config(int condenseFactor = 4, int groups = 4) => new()
    {
        Stages = [2, 2], Growth = [8, 8], Group1x1 = groups, Group3x3 = groups, CondenseFactor = condenseFactor,
        InChannels = 3, InputSize = 16, NumClasses = 10,
    };

    /// <summary>Random BN affine parameters and running statistics, so equivalence tests see non-trivial normalisation.</summary>
    public static void RandomizeBatchNorm(nn.Module model, int seed)
    {
        using var _ = torch.no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var (_, module) in model.named_modules())
        {
            if (module is not TorchSharp.Modules.BatchNorm2d bn) continue;
            bn.weight!.copy_(torch.rand(bn.weight.shape, generator: generator) + 0.5);
            bn.bias!.copy_(torch.randn(bn.bias!.shape, generator: generator) * 0.2);
            bn.running_mean!.copy_(torch.randn(bn.running_mean!.shape, generator: generator) * 0.2);
            bn.running_var!.copy_(torch.rand(bn.running_var!.shape, generator: generator) + 0.5);
        }
    }
}

static class Tensors
{
    /// <summary>Same shape, same dtype and every element equal.</summary>
    public static bool Identical(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();
}
