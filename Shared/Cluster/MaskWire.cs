namespace CondenseCluster.Shared.Cluster;

/// <summary>
/// How masks and importance cross the control plane: kept columns [G, in] as bits (<see cref="ApplyMasks"/>), importance
/// [G, in] as row-major float32 bytes (<see cref="LayerImportance"/>); the receiver checks each against the layer's shape.
/// </summary>
public static class MaskWire
{
    /// <summary>Kept columns [G, in] as bits, row-major: an eighth of a byte per column instead of a JSON boolean.</summary>
    public static byte[] Pack(bool[,] kept)
    {
        int groups = kept.GetLength(0), inputs = kept.GetLength(1);
        var bits = new byte[(groups * inputs + 7) / 8];
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < inputs; j++)
                if (kept[g, j]) bits[(g * inputs + j) / 8] |= (byte)(1 << ((g * inputs + j) % 8));
        return bits;
    }

    /// <summary>The kept columns [G, in] that <see cref="Pack"/> wrote, checked against the layer's shape.</summary>
    public static bool[,] Unpack(byte[] bits, int groups, int inputs)
    {
        if (bits.Length != (groups * inputs + 7) / 8)
            throw new ArgumentException($"{bits.Length} bytes of mask bits for a [{groups}, {inputs}] mask, {(groups * inputs + 7) / 8} expected");
        var kept = new bool[groups, inputs];
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < inputs; j++)
                kept[g, j] = (bits[(g * inputs + j) / 8] & (1 << ((g * inputs + j) % 8))) != 0;
        return kept;
    }

    /// <summary>The message carrying averaged importance [G, in] of learned layer <paramref name="layer"/>.</summary>
    public static LayerImportance Importance(long maskVersion, int layer, float[,] importance)
    {
        var bytes = new byte[Buffer.ByteLength(importance)];
        Buffer.BlockCopy(importance, 0, bytes, 0, bytes.Length);
        return new(maskVersion, layer, bytes);
    }

    /// <summary>The importance matrix back, checked against the layer's shape.</summary>
    public static float[,] Matrix(this LayerImportance report, int groups, int inputs)
    {
        if (report.Values.Length != groups * inputs * sizeof(float))
            throw new ArgumentException($"importance of layer {report.Layer} has {report.Values.Length / sizeof(float)} values, [{groups}, {inputs}] expected");
        var matrix = new float[groups, inputs];
        Buffer.BlockCopy(report.Values, 0, matrix, 0, report.Values.Length);
        return matrix;
    }
}
