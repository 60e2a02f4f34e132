using System.Numerics;

namespace CondenseCluster.Shared.Model;

/// <summary>Sizes of a converted dense layer's learned 1x1 convolution as <see cref="CondensedBottleneckKernel"/> reads them.</summary>
/// <param name="Images">N.</param>
/// <param name="Plane">H·W.</param>
/// <param name="Groups">G.</param>
/// <param name="InputsPerGroup">Kept input channels of each group.</param>
/// <param name="OutputsPerGroup">Output channels of each group.</param>
public readonly record struct BottleneckShape(int Images, int Plane, int Groups, int InputsPerGroup, int OutputsPerGroup)
{
    public int Inputs => Groups * InputsPerGroup;
    public int Outputs => Groups * OutputsPerGroup;
    public long Row => (long)Images * Plane;
}

/// <summary>
/// A converted dense layer's bottleneck in one pass, for <see cref="CondensedInference"/>: gather the kept channels of
/// the channel-major block, BN → ReLU them (scale1, shift1), apply the grouped 1x1 convolution with conv_2's BatchNorm
/// folded into it (weight, bias), ReLU, and write the result as an NCHW image in the shuffled channel order (row
/// g·(out/G) + k is channel k·G + g). Composed of libtorch operations the same work is five passes over memory
/// (index_select or its fused BN → ReLU, the product's packing of its input, the product, bias and ReLU, the shuffling
/// copy); here the gathered input exists only as a tile in cache and the output is written once.
/// </summary>
public static unsafe class CondensedBottleneckKernel
{
    const int RowBlock = 8;                       // output rows accumulated together: each input value is loaded once per 8 rows
    static readonly int Width = 2 * Vector<float>.Count; // columns accumulated together
    const int TileBytes = 64 * 1024;              // the gathered tile stays in L2 between its rows' blocks

    [ThreadStatic] static float[]? tileBuffer;

    /// <summary>
    /// y [N, out, H·W] from the block x [channels, N·H·W]: y[n, k·G + g] = max(bias[r] + Σᵢ weight[r, i]·max(x[index[g·I + i], n]·scale1 + shift1, 0), 0)
    /// with r = g·(out/G) + k, weight [out, I] in row order r.
    /// </summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<long> index, ReadOnlySpan<float> scale1, ReadOnlySpan<float> shift1,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> y, BottleneckShape shape, int threads)
    {
        Check(x, index, scale1, shift1, weight, bias, y, shape);
        fixed (float* xp = x, ap = scale1, bp = shift1, wp = weight, cp = bias, yp = y)
        fixed (long* ip = index)
        {
            var (px, pa, pb, pw, pc, py, pi) = ((nint)xp, (nint)ap, (nint)bp, (nint)wp, (nint)cp, (nint)yp, (nint)ip);
            // One task per image and group; at batch 1 that is G tasks.
            int tasks = shape.Images * shape.Groups;
            threads = BatchNormReluKernel.ThreadsFor(shape.Row * shape.Inputs, threads);
            BatchNormReluKernel.ForEachChannel(tasks, threads, task => ImageGroup((float*)px, (long*)pi, (float*)pa, (float*)pb,
                (float*)pw, (float*)pc, (float*)py, shape, task / shape.Groups, task % shape.Groups));
        }
    }

    static void ImageGroup(float* x, long* index, float* scale1, float* shift1, float* weight, float* bias, float* y,
        BottleneckShape shape, int image, int group)
    {
        int inputs = shape.InputsPerGroup;
        // Tile columns: a multiple of Width, as many as fit the tile's bytes, at most the plane (rounded up).
        int columns = Math.Max(Width, TileBytes / sizeof(float) / inputs / Width * Width);
        columns = Math.Min(columns, (shape.Plane + Width - 1) / Width * Width);
        var buffer = tileBuffer is { } b && b.Length >= inputs * columns ? b : tileBuffer = new float[inputs * columns];
        int first = group * inputs;
        fixed (float* tile = buffer)
        {
            for (int start = 0; start < shape.Plane; start += columns)
            {
                int width = Math.Min(columns, shape.Plane - start);
                for (int i = 0; i < inputs; i++)
                {
                    float* source = x + index[first + i] * shape.Row + (long)image * shape.Plane + start;
                    BatchNormReluKernel.ScaleShiftRelu(source, tile + i * columns, width, scale1[first + i], shift1[first + i]);
                }
                for (int k = 0; k < shape.OutputsPerGroup; k += RowBlock)
                {
                    int rows = Math.Min(RowBlock, shape.OutputsPerGroup - k);
                    ProductBlock(tile, columns, width, inputs, weight, bias, y, shape, image, group, k, rows, start);
                }
            }
        }
    }

    /// <summary>Output rows k … k+rows−1 of the group over the tile's columns.</summary>
    static void ProductBlock(float* tile, int columns, int width, int inputs, float* weight, float* bias, float* y,
        BottleneckShape shape, int image, int group, int k, int rows, int start)
    {
        int r = group * shape.OutputsPerGroup + k;
        float* w = weight + (long)r * inputs;
        long rowStride = (long)shape.Groups * shape.Plane; // a group's consecutive rows are channels G apart
        int vectorized = 0;
        if (rows == RowBlock)
            for (; vectorized <= width - Width; vectorized += Width)
                EightRows(tile + vectorized, columns, inputs, w, bias + r, Output(y, shape, image, group, k, start + vectorized), rowStride);
        // Rows short of a whole block, and columns short of a whole pair of vectors, one value at a time.
        for (int row = 0; row < rows; row++)
        {
            float* output = Output(y, shape, image, group, k + row, start);
            for (int column = vectorized; column < width; column++)
            {
                float sum = bias[r + row];
                for (int i = 0; i < inputs; i++) sum = MathF.FusedMultiplyAdd(w[(long)row * inputs + i], tile[i * columns + column], sum);
                output[column] = MathF.Max(sum, 0);
            }
        }
    }

    /// <summary>Where output row k of the group starts for this image: channel k·G + g of the NCHW output.</summary>
    static float* Output(float* y, BottleneckShape shape, int image, int group, int k, int column) =>
        y + ((long)image * shape.Outputs + (long)k * shape.Groups + group) * shape.Plane + column;

    /// <summary>Eight output rows over 2·Vector columns: 16 accumulators, each input vector loaded once for the eight rows.</summary>
    static void EightRows(float* tile, int columns, int inputs, float* w, float* bias, float* output, long rowStride)
    {
        int v = Vector<float>.Count;
        Vector<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default,
            a4 = default, b4 = default, a5 = default, b5 = default, a6 = default, b6 = default, a7 = default, b7 = default;
        for (int i = 0; i < inputs; i++)
        {
            var lo = Vector.Load(tile + i * columns);
            var hi = Vector.Load(tile + i * columns + v);
            float* wi = w + i;
            Accumulate(wi[0], lo, hi, ref a0, ref b0);
            Accumulate(wi[inputs], lo, hi, ref a1, ref b1);
            Accumulate(wi[2 * inputs], lo, hi, ref a2, ref b2);
            Accumulate(wi[3 * inputs], lo, hi, ref a3, ref b3);
            Accumulate(wi[4 * inputs], lo, hi, ref a4, ref b4);
            Accumulate(wi[5 * inputs], lo, hi, ref a5, ref b5);
            Accumulate(wi[6 * inputs], lo, hi, ref a6, ref b6);
            Accumulate(wi[7 * inputs], lo, hi, ref a7, ref b7);
        }
        BiasRelu(output, bias[0], a0, b0);
        BiasRelu(output + rowStride, bias[1], a1, b1);
        BiasRelu(output + 2 * rowStride, bias[2], a2, b2);
        BiasRelu(output + 3 * rowStride, bias[3], a3, b3);
        BiasRelu(output + 4 * rowStride, bias[4], a4, b4);
        BiasRelu(output + 5 * rowStride, bias[5], a5, b5);
        BiasRelu(output + 6 * rowStride, bias[6], a6, b6);
        BiasRelu(output + 7 * rowStride, bias[7], a7, b7);
    }

    static void BiasRelu(float* output, float bias, Vector<float> lo, Vector<float> hi)
    {
        var b = new Vector<float>(bias);
        Vector.Max(lo + b, Vector<float>.Zero).Store(output);
        Vector.Max(hi + b, Vector<float>.Zero).Store(output + Vector<float>.Count);
    }

    static void Check(ReadOnlySpan<float> x, ReadOnlySpan<long> index, ReadOnlySpan<float> scale1, ReadOnlySpan<float> shift1,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> y, BottleneckShape shape)
    {
        if (shape.Images <= 0 || shape.Plane <= 0 || shape.Groups <= 0 || shape.InputsPerGroup <= 0 || shape.OutputsPerGroup <= 0)
            throw new ArgumentException($"{shape} has a size that is not positive");
        if (x.Length % shape.Row != 0) throw new ArgumentException($"x has {x.Length} values, not whole rows of N·H·W = {shape.Row}");
        if (index.Length != shape.Inputs || scale1.Length != shape.Inputs || shift1.Length != shape.Inputs)
            throw new ArgumentException($"index, scale1 and shift1 have {index.Length}, {scale1.Length} and {shift1.Length} values; {shape} needs {shape.Inputs} each");
        if (weight.Length != (long)shape.Outputs * shape.InputsPerGroup || bias.Length != shape.Outputs)
            throw new ArgumentException($"weight and bias have {weight.Length} and {bias.Length} values; {shape} needs {(long)shape.Outputs * shape.InputsPerGroup} and {shape.Outputs}");
        if (y.Length != shape.Row * shape.Outputs) throw new ArgumentException($"y has {y.Length} values; {shape} needs {shape.Row * shape.Outputs}");
        long channels = x.Length / shape.Row;
        foreach (long channel in index)
            if (channel < 0 || channel >= channels) throw new ArgumentException($"index names channel {channel}, outside x's {channels}");
    }

    static void Accumulate(float weight, Vector<float> lo, Vector<float> hi, ref Vector<float> a, ref Vector<float> b)
    {
        var w = new Vector<float>(weight);
        a = Vector.FusedMultiplyAdd(w, lo, a);
        b = Vector.FusedMultiplyAdd(w, hi, b);
    }
}
