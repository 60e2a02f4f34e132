using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// An exponential moving average of a model's weights (<c>--ema DECAY</c>, as CondenseNetV2's recipe keeps one):
/// after every applied update, average ← decay·average + (1 − decay)·weights, for the parameters and the BatchNorm
/// running statistics. It is a model of its own, evaluated, converted and exported beside the trained one, and it
/// always has the trained model's masks: condensing prunes both alike. Replicas apply the same update to the same
/// weights, so their averages stay bit-identical; the running statistics are averaged across replicas with the model's
/// (the average of replicas' averages is the average of their mean: both are linear).
/// </summary>
public sealed class WeightAverage : IDisposable
{
    readonly CondenseNet trained;
    readonly Scalar decay, rate; // decay and 1 − decay, kept alive for the native calls
    readonly (Tensor Average, Tensor Current)[] pairs;

    public WeightAverage(CondenseNet trained, double decay, Device device)
    {
        this.trained = trained;
        Decay = decay;
        (this.decay, rate) = (decay.ToScalar(), (1 - decay).ToScalar());
        Model = new CondenseNet(trained.Config).to(device);
        Model.eval();
        pairs = [.. Averaged(Model).Zip(Averaged(trained))];
        Restart();
    }

    public double Decay { get; }

    /// <summary>The averaged model.</summary>
    public CondenseNet Model { get; }

    /// <summary>The tensors that are averaged: parameters, then every BatchNorm's running mean and variance.</summary>
    public static IEnumerable<Tensor> Averaged(CondenseNet model) =>
        model.parameters().Concat(RunningStatistics(model));

    /// <summary>Every BatchNorm's running mean and variance, in network order.</summary>
    public static IEnumerable<Tensor> RunningStatistics(CondenseNet model) =>
        model.modules().OfType<BatchNorm>().SelectMany(bn => new[] { bn.RunningMean, bn.RunningVar });

    /// <summary>Moves the average one step towards the trained model's current weights.</summary>
    public void Update()
    {
        using var _ = torch.no_grad();
        foreach (var (average, current) in pairs) average.mul_(decay).add_(current, rate);
    }

    /// <summary>Starts the average again at the trained model's weights and masks (a new run, or weights loaded from elsewhere).</summary>
    public void Restart()
    {
        using var _ = torch.no_grad();
        foreach (var (average, current) in pairs) average.copy_(current);
        FollowMasks(ModelCondensing.Masks(trained));
    }

    /// <summary>Gives the average the trained model's masks (<paramref name="masks"/>), after condensing changed them.</summary>
    public void FollowMasks(IReadOnlyList<LayerMask> masks) => ModelCondensing.Install(Model, masks);

    public void Dispose()
    {
        decay.Dispose();
        rate.Dispose();
        Model.Dispose();
    }
}
