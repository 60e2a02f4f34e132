namespace CondenseCluster.Shared.Model;

/// <summary>The mask of one learned group convolution: its condensing stage and kept input columns per group [G, in].</summary>
public sealed record LayerMask(int Stage, bool[,] Kept);

/// <summary>
/// Moves learned group convolutions along the condensing schedule. One decision function serves both places that
/// condense: a single node deciding on its own weights, and the coordinator deciding on importance averaged over
/// workers (DESIGN.md §2), so both drop exactly the same columns for the same importance.
/// </summary>
public static class ModelCondensing
{
    /// <summary>Single node: each layer behind the schedule at <paramref name="progress"/> drops on its own weights; returns how many moved.</summary>
    public static int Apply(CondenseNet model, double progress)
    {
        var layers = model.LearnedLayers.Select(l => l.Layer).ToArray();
        var (masks, moved) = Decide(Masks(model), progress, model.Config.CondenseFactor, i => layers[i].Importance());
        if (moved > 0) Install(model, masks);
        return moved;
    }

    /// <summary>
    /// The masks after <paramref name="progress"/>: a layer whose stage is behind moves with one drop of in/C columns per
    /// group, decided on <paramref name="importance"/> of that layer (asked only for layers that move).
    /// </summary>
    public static (IReadOnlyList<LayerMask> Masks, int Moved) Decide(IReadOnlyList<LayerMask> current, double progress, int condenseFactor,
        Func<int, float[,]> importance)
    {
        var next = new LayerMask[current.Count];
        int moved = 0;
        for (int i = 0; i < current.Count; i++)
        {
            var layer = current[i];
            next[i] = layer;
            if (CondensingSchedule.NextStage(layer.Stage, progress, condenseFactor) is not int stage) continue;
            int delta = CondensingSchedule.ColumnsPerDrop(layer.Kept.GetLength(1), condenseFactor);
            next[i] = new LayerMask(stage, DropCriterion.Drop(importance(i), layer.Kept, delta));
            moved++;
        }
        return (next, moved);
    }

    /// <summary>The masks a model holds, in <see cref="CondenseNet.LearnedLayers"/> order.</summary>
    public static IReadOnlyList<LayerMask> Masks(CondenseNet model) =>
        model.LearnedLayers.Select(l => new LayerMask(l.Layer.Stage, l.Layer.KeptColumns())).ToArray();

    /// <summary>
    /// Fraction of the masks' (group, input) entries pruned: the sparsity runs report. The schedule keeps every layer at
    /// the same stage, so where C divides the layers' inputs this equals the fraction of the learned group convolutions'
    /// weights that are pruned (each layer's weights have out/G rows per group).
    /// </summary>
    public static double Sparsity(IReadOnlyList<LayerMask> masks)
    {
        long kept = masks.Sum(m => (long)m.Kept.Cast<bool>().Count(k => k)), total = masks.Sum(m => (long)m.Kept.Length);
        return total == 0 ? 0 : 1 - (double)kept / total;
    }

    /// <summary>Installs masks decided for this model (one per learned layer, in order).</summary>
    public static void Install(CondenseNet model, IReadOnlyList<LayerMask> masks)
    {
        var layers = model.LearnedLayers.ToArray();
        if (masks.Count != layers.Length)
            throw new ArgumentException($"{masks.Count} masks for a model with {layers.Length} learned group convolutions");
        for (int i = 0; i < layers.Length; i++) layers[i].Layer.ApplyKeptColumns(masks[i].Kept, masks[i].Stage);
    }

    /// <summary>A short digest of stages and kept columns: equal on two replicas exactly when their masks are.</summary>
    public static string Checksum(IReadOnlyList<LayerMask> masks) => ShortDigest.Of(hash =>
    {
        foreach (var mask in masks)
        {
            hash.AppendData(BitConverter.GetBytes(mask.Stage));
            hash.AppendData(BitConverter.GetBytes(mask.Kept.GetLength(0)));
            // A byte per column (a bool is stored as 0 or 1), read in place: the digest is the model's, independent of
            // how the wire packs masks (MaskWire), and every worker's acknowledgement of a broadcast computes it.
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(
                ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(mask.Kept), mask.Kept.Length));
        }
    });
}
