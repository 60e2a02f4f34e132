namespace CondenseCluster.Shared.Model;

/// <summary>
/// Which input columns a learned group convolution drops (DESIGN.md §1.1). Importance of column j for group g is
/// the L1 sum of the masked weights of the group's rows; each group drops its <c>delta</c> least important columns
/// that it still keeps. Pure: works on importance matrices, so the coordinator can decide from averaged values.
/// </summary>
public static class DropCriterion
{
    /// <summary>Importance [G, in] of masked weights [out, in] (row-major): Σ over rows o ≡ g (mod G) of |W·mask|.</summary>
    public static float[,] Importance(ReadOnlySpan<float> weight, ReadOnlySpan<float> mask, int outChannels, int inChannels, int groups)
    {
        var importance = new float[groups, inChannels];
        for (int o = 0; o < outChannels; o++)
            for (int j = 0; j < inChannels; j++)
                importance[o % groups, j] += Math.Abs(weight[o * inChannels + j] * mask[o * inChannels + j]);
        return importance;
    }

    /// <summary>
    /// Returns the new kept-columns matrix [G, in] after one drop of <paramref name="delta"/> columns per group.
    /// Columns already dropped sort first (as the official code's zero importance does), the kept ones ascending by
    /// importance, ties by column index; the first <paramref name="delta"/> kept ones are dropped.
    /// </summary>
    public static bool[,] Drop(float[,] importance, bool[,] kept, int delta)
    {
        int groups = kept.GetLength(0), inputs = kept.GetLength(1);
        if (importance.GetLength(0) != groups || importance.GetLength(1) != inputs)
            throw new ArgumentException($"importance is [{importance.GetLength(0)}, {importance.GetLength(1)}] but the mask is [{groups}, {inputs}]");

        var result = (bool[,])kept.Clone();
        for (int g = 0; g < groups; g++)
        {
            var candidates = Enumerable.Range(0, inputs).Where(j => kept[g, j]).ToArray();
            if (candidates.Length < delta)
                throw new InvalidOperationException($"group {g} keeps {candidates.Length} columns and cannot drop {delta} more");
            // OrderBy is a stable sort: equal importances keep ascending column order.
            foreach (int j in candidates.OrderBy(j => importance[g, j]).Take(delta))
                result[g, j] = false;
        }
        return result;
    }

    /// <summary>The per-group kept-columns matrix [G, in] of a full mask [out, in]: row g of the mask (group g's first output).</summary>
    public static bool[,] KeptColumns(ReadOnlySpan<float> mask, int inChannels, int groups)
    {
        var kept = new bool[groups, inChannels];
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < inChannels; j++)
                kept[g, j] = mask[g * inChannels + j] != 0;
        return kept;
    }

    /// <summary>The full mask [out, in] whose row o is the kept columns of group o mod G.</summary>
    public static float[] ExpandMask(bool[,] kept, int outChannels)
    {
        int groups = kept.GetLength(0), inputs = kept.GetLength(1);
        var mask = new float[outChannels * inputs];
        for (int o = 0; o < outChannels; o++)
            for (int j = 0; j < inputs; j++)
                mask[o * inputs + j] = kept[o % groups, j] ? 1f : 0f;
        return mask;
    }
}
