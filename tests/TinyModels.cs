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
            if (module is not BatchNorm bn) continue;
            bn.Weight.copy_(Uniform(bn.Weight.shape, 0.5, 1.5, generator));
            bn.Bias.copy_(Uniform(bn.Bias.shape, -0.3, 0.3, generator));
            bn.RunningMean.copy_(Uniform(bn.RunningMean.shape, -0.3, 0.3, generator));
            bn.RunningVar.copy_(Uniform(bn.RunningVar.shape, 0.5, 1.5, generator));
        }
    }

    /// <summary>
    /// A model with random BatchNorm statistics condensed through all C-1 stages, its learned weights perturbed before
    /// each drop so that the stages drop different columns: ready for conversion.
    /// </summary>
    public static CondenseNet FullyCondensed(CondenseNetConfig config, int seed)
    {
        torch.manual_seed(seed);
        var model = new CondenseNet(config);
        RandomizeBatchNorm(model, seed: seed + 7);
        for (int stage = 1; stage < config.CondenseFactor; stage++)
        {
            using (torch.no_grad())
                foreach (var (_, layer) in model.LearnedLayers)
                    layer.Weight.add_(torch.empty(layer.Weight.shape).normal_(0, 0.01));
            ModelCondensing.Apply(model, stage / (2.0 * (config.CondenseFactor - 1)));
        }
        return model;
    }

    static Tensor Uniform(long[] shape, double low, double high, Generator generator) =>
        torch.empty(shape).uniform_(low, high, generator);
}

static class Tensors
{
    /// <summary>Same shape, same dtype and every element equal.</summary>
    public static bool Identical(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();
}
