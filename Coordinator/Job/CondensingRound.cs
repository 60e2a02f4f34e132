using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// The masks the coordinator decides for every replica (DESIGN.md §2): the ones in force, and one condensing round at a
/// time: importance of every learned layer in (averaged by the workers), the decided masks out with a new version,
/// and each worker's acknowledgement checked against them before they are in force.
/// </summary>
sealed class CondensingRound(IReadOnlyList<LayerMask> initial, int condenseFactor)
{
    float[][,] importance = [];
    int received;

    /// <summary>The masks every replica holds.</summary>
    public IReadOnlyList<LayerMask> Masks { get; private set; } = initial;

    /// <summary>The version of the round running or last run; 0 before the first.</summary>
    public long Version { get; private set; }

    /// <summary>Masks decided and broadcast but not yet acknowledged by every worker.</summary>
    public IReadOnlyList<LayerMask>? Decided { get; private set; }

    /// <summary>The replicas hold other masks than thought (those of a state the workers kept).</summary>
    public void Adopt(IReadOnlyList<LayerMask> masks) => Masks = masks;

    /// <summary>Starts a round: the workers are asked for importance under a new version.</summary>
    public ComputeImportance Begin()
    {
        Version++;
        importance = new float[Masks.Count][,];
        received = 0;
        return new ComputeImportance(Version);
    }

    /// <summary>One layer's averaged importance; true once every layer's is in. Throws ArgumentException for a malformed one.</summary>
    public bool Add(LayerImportance layer)
    {
        if (layer.Layer < 0 || layer.Layer >= Masks.Count) throw new ArgumentException($"importance of layer {layer.Layer}, the model has {Masks.Count}");
        var kept = Masks[layer.Layer].Kept;
        var matrix = layer.Matrix(kept.GetLength(0), kept.GetLength(1));
        if (importance[layer.Layer] is null) received++;
        importance[layer.Layer] = matrix;
        return received == Masks.Count;
    }

    /// <summary>Decides the masks at <paramref name="progress"/> from the importance received; returns how many layers move.</summary>
    public int Decide(double progress)
    {
        (Decided, int moved) = ModelCondensing.Decide(Masks, progress, condenseFactor, i => importance[i]);
        DecidedChecksum = ModelCondensing.Checksum(Decided);
        return moved;
    }

    /// <summary>The decided masks as they are sent to every worker before step <paramref name="step"/>.</summary>
    public ApplyMasks Broadcast(long step) =>
        new(Version, step, Decided!.Select(m => m.Stage).ToArray(), Decided!.Select(m => MaskWire.Pack(m.Kept)).ToArray());

    /// <summary>The checksum every worker must report after installing the decided masks (computed once: every acknowledgement is checked against it).</summary>
    public string DecidedChecksum { get; private set; } = "";

    /// <summary>Every worker installed the decided masks: they are in force.</summary>
    public void Commit()
    {
        Masks = Decided!;
        Decided = null;
    }
}
