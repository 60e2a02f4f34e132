using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Digest of a replica's trainable weights. Replicas that apply the same bit-identical all-reduced gradients stay
/// bit-identical, so equal digests are expected and a difference means a replica diverged (DESIGN.md §2).
/// BatchNorm running statistics are left out: each replica updates them on its own micro-batches between averagings.
/// With --ema the averaged weights are digested too: they must stay identical as well.
/// </summary>
public static class ReplicaChecksum
{
    public static string Weights(TrainingEngine engine) => Weights(engine.Model, engine.Average?.Model);

    public static string Weights(CondenseNet model, CondenseNet? average = null) => ShortDigest.Of(hash =>
    {
        foreach (var parameter in model.parameters().Concat(average?.parameters() ?? []))
        {
            using var cpu = parameter.detach().cpu().contiguous();
            hash.AppendData(cpu.bytes);
        }
    });
}
