using System.Numerics;

namespace CondenseCluster.Shared.Model;

/// <summary>Shape of an NCHW tensor seen as [images, channels, plane], plane = H·W.</summary>
public readonly record struct PlaneLayout(int Images, int Channels, int Plane)
{
    public long Length => (long)Images * Channels * Plane;

    /// <summary>Values each channel's statistics are taken over.</summary>
    public long PerChannel => (long)Images * Plane;
}

/// <summary>
/// Training-mode BN → ReLU with batch statistics, forward and backward, one channel at a time. libtorch runs it as three
/// passes over memory forward (statistics, normalize, ReLU) and three backward (ReLU mask, BN's reductions, input
/// gradient), each over the whole tensor; a dense layer normalizes its whole concatenated input, so these passes are a
/// large part of a CondenseNet step. Here a channel's values stay in cache between the passes over them, and backward
/// recomputes the ReLU mask from the input instead of reading a saved output. Sums are taken in double.
/// Output: y = max(x·scale + shift, 0), scale = w/√(var+eps), shift = b − mean·scale (biased variance, as BN uses).
/// </summary>
public static unsafe class BatchNormReluKernel
{
    /// <summary>Writes y; returns each channel's batch mean, 1/√(var+eps) and biased variance.</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, PlaneLayout layout, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        Span<float> mean, Span<float> invStd, Span<float> variance, int threads)
    {
        Check(layout, x.Length, y.Length, weight.Length, bias.Length, mean.Length, invStd.Length, variance.Length);
        fixed (float* xp = x, yp = y, wp = weight, bp = bias, mp = mean, ip = invStd, vp = variance)
        {
            var (px, py, pw, pb, pm, pi, pv) = ((nint)xp, (nint)yp, (nint)wp, (nint)bp, (nint)mp, (nint)ip, (nint)vp);
            ForEachChannel(layout.Channels, threads, c => ForwardChannel((float*)px, (float*)py, layout, c,
                ((float*)pw)[c], ((float*)pb)[c], out ((float*)pm)[c], out ((float*)pi)[c], out ((float*)pv)[c]));
        }
    }

    /// <summary>Writes dx, dweight and dbias from dy, given the forward's mean and 1/√(var+eps).</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, PlaneLayout layout,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, ReadOnlySpan<float> mean, ReadOnlySpan<float> invStd,
        Span<float> dWeight, Span<float> dBias, int threads)
    {
        Check(layout, x.Length, dx.Length, weight.Length, bias.Length, mean.Length, invStd.Length, dWeight.Length, dBias.Length);
        if (dy.Length != x.Length) throw new ArgumentException($"dy has {dy.Length} values, x has {x.Length}");
        fixed (float* xp = x, gp = dy, dxp = dx, wp = weight, bp = bias, mp = mean, ip = invStd, dwp = dWeight, dbp = dBias)
        {
            var (px, pg, pdx, pw, pb, pm, pi, pdw, pdb) = ((nint)xp, (nint)gp, (nint)dxp, (nint)wp, (nint)bp, (nint)mp, (nint)ip, (nint)dwp, (nint)dbp);
            ForEachChannel(layout.Channels, threads, c => BackwardChannel((float*)px, (float*)pg, (float*)pdx, layout, c,
                ((float*)pw)[c], ((float*)pb)[c], ((float*)pm)[c], ((float*)pi)[c], out ((float*)pdw)[c], out ((float*)pdb)[c]));
        }
    }

    /// <summary>
    /// Eval-mode BN → ReLU of chosen rows of a channel-major matrix x [channels, rowLength], gathered into y
    /// [rows.Length, rowLength]: y[i] = max(x[rows[i]]·scale[i] + shift[i], 0), scale and shift from the running
    /// statistics. One pass where index_select, batch_norm and relu_ make three (<see cref="CondensedInference"/>).
    /// </summary>
    public static void GatherEval(ReadOnlySpan<float> x, int rowLength, ReadOnlySpan<long> rows, ReadOnlySpan<float> scale,
        ReadOnlySpan<float> shift, Span<float> y, int threads)
    {
        if (rowLength <= 0 || x.Length % rowLength != 0) throw new ArgumentException($"x has {x.Length} values, not whole rows of {rowLength}");
        if (y.Length != (long)rows.Length * rowLength) throw new ArgumentException($"y has {y.Length} values, {rows.Length} rows need {(long)rows.Length * rowLength}");
        if (scale.Length != rows.Length || shift.Length != rows.Length)
            throw new ArgumentException($"scale and shift have {scale.Length} and {shift.Length} values, one per row ({rows.Length}) needed");
        long channels = x.Length / rowLength;
        foreach (long row in rows)
            if (row < 0 || row >= channels) throw new ArgumentException($"row {row} is outside x's {channels} rows");
        threads = ThreadsFor((long)rows.Length * rowLength, threads);
        fixed (float* xp = x, yp = y, ap = scale, bp = shift)
        fixed (long* rp = rows)
        {
            var (px, py, pa, pb, pr) = ((nint)xp, (nint)yp, (nint)ap, (nint)bp, (nint)rp);
            ForEachChannel(rows.Length, threads, i => ScaleShiftRelu((float*)px + ((long*)pr)[i] * rowLength, (float*)py + (long)i * rowLength,
                rowLength, ((float*)pa)[i], ((float*)pb)[i]));
        }
    }

    /// <summary>
    /// The threads worth using for a pass over this many values: small ones (batch 1 in inference) run on the calling
    /// thread, where waking a helper would cost more than it saves.
    /// </summary>
    internal static int ThreadsFor(long values, int threads) => values < MinParallelValues ? 1 : threads;

    const int MinParallelValues = 1 << 18;

    static void ForwardChannel(float* x, float* y, PlaneLayout layout, int c, float weight, float bias,
        out float mean, out float invStd, out float variance)
    {
        double sum = 0;
        for (int n = 0; n < layout.Images; n++) sum += Sum(x + Offset(layout, n, c), layout.Plane);
        double m = sum / layout.PerChannel;
        double squares = 0;
        for (int n = 0; n < layout.Images; n++) squares += SquaredDeviations(x + Offset(layout, n, c), layout.Plane, (float)m);
        double v = squares / layout.PerChannel, inv = 1 / Math.Sqrt(v + BatchNorm.Eps);
        float scale = (float)(weight * inv), shift = (float)(bias - m * weight * inv);
        for (int n = 0; n < layout.Images; n++)
        {
            long at = Offset(layout, n, c);
            ScaleShiftRelu(x + at, y + at, layout.Plane, scale, shift);
        }
        (mean, invStd, variance) = ((float)m, (float)inv, (float)v);
    }

    // With g = dy where the output was positive, else 0, and x̂ = (x − mean)·invStd:
    // dbias = Σg, dweight = Σg·x̂, dx = scale·(g − Σg/M − x̂·Σg·x̂/M), written as dx = scale·g − k·x + k0.
    static void BackwardChannel(float* x, float* dy, float* dx, PlaneLayout layout, int c, float weight, float bias,
        float mean, float invStd, out float dWeight, out float dBias)
    {
        float scale = weight * invStd, shift = bias - mean * scale;
        double sumG = 0, sumGx = 0;
        for (int n = 0; n < layout.Images; n++)
        {
            long at = Offset(layout, n, c);
            var (g, gx) = MaskedSums(x + at, dy + at, layout.Plane, scale, shift, mean);
            sumG += g;
            sumGx += gx;
        }
        double count = layout.PerChannel;
        float k = (float)(scale * invStd * invStd * sumGx / count);
        float k0 = (float)(k * mean - scale * sumG / count);
        for (int n = 0; n < layout.Images; n++)
        {
            long at = Offset(layout, n, c);
            InputGradient(x + at, dy + at, dx + at, layout.Plane, scale, shift, k, k0);
        }
        (dWeight, dBias) = ((float)(sumGx * invStd), (float)sumG);
    }

    static long Offset(PlaneLayout layout, int image, int channel) => ((long)image * layout.Channels + channel) * layout.Plane;

    /// <summary>
    /// Runs every channel, spread over up to <paramref name="threads"/> threads that each take the next channel not yet
    /// taken, rather than a fixed share: a helper thread may get only part of a core (libtorch's OpenMP threads spin for
    /// a while after each of their operations), and the calling thread then does more of the channels.
    /// </summary>
    internal static void ForEachChannel(int channels, int threads, Action<int> channel)
    {
        int workers = Math.Clamp(threads, 1, channels);
        if (workers == 1)
        {
            for (int c = 0; c < channels; c++) channel(c);
            return;
        }
        int next = -1;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ =>
        {
            for (int c; (c = Interlocked.Increment(ref next)) < channels;) channel(c);
        });
    }

    static void Check(PlaneLayout layout, int length, params ReadOnlySpan<int> perChannelAndOutput)
    {
        if (length != layout.Length) throw new ArgumentException($"input has {length} values, {layout} needs {layout.Length}");
        if (perChannelAndOutput[0] != length) throw new ArgumentException($"output has {perChannelAndOutput[0]} values, input {length}");
        foreach (int n in perChannelAndOutput[1..])
            if (n != layout.Channels) throw new ArgumentException($"a per-channel vector has {n} values, the input {layout.Channels} channels");
    }

    // The reductions below keep four (or two pairs of) independent vector sums: one running sum would make every
    // addition wait for the one before it, and the loop would run at the adder's latency instead of its throughput.
    const int Unroll = 4;

    static double Sum(float* p, int length)
    {
        int w = Vector<float>.Count, i = 0;
        Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= length - Unroll * w; i += Unroll * w)
        {
            a0 += Load(p + i);
            a1 += Load(p + i + w);
            a2 += Load(p + i + 2 * w);
            a3 += Load(p + i + 3 * w);
        }
        for (; i <= length - w; i += w) a0 += Load(p + i);
        double sum = Vector.Sum((a0 + a1) + (a2 + a3));
        for (; i < length; i++) sum += p[i];
        return sum;
    }

    static double SquaredDeviations(float* p, int length, float mean)
    {
        int w = Vector<float>.Count, i = 0;
        var m = new Vector<float>(mean);
        Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= length - Unroll * w; i += Unroll * w)
        {
            var d0 = Load(p + i) - m;
            var d1 = Load(p + i + w) - m;
            var d2 = Load(p + i + 2 * w) - m;
            var d3 = Load(p + i + 3 * w) - m;
            a0 = Vector.FusedMultiplyAdd(d0, d0, a0);
            a1 = Vector.FusedMultiplyAdd(d1, d1, a1);
            a2 = Vector.FusedMultiplyAdd(d2, d2, a2);
            a3 = Vector.FusedMultiplyAdd(d3, d3, a3);
        }
        for (; i <= length - w; i += w)
        {
            var d = Load(p + i) - m;
            a0 = Vector.FusedMultiplyAdd(d, d, a0);
        }
        double sum = Vector.Sum((a0 + a1) + (a2 + a3));
        for (; i < length; i++) sum += (double)(p[i] - mean) * (p[i] - mean);
        return sum;
    }

    internal static void ScaleShiftRelu(float* x, float* y, int length, float scale, float shift)
    {
        var a = new Vector<float>(scale);
        var b = new Vector<float>(shift);
        int i = 0;
        for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
            Store(Vector.Max(Vector.FusedMultiplyAdd(Load(x + i), a, b), Vector<float>.Zero), y + i);
        for (; i < length; i++) y[i] = MathF.Max(MathF.FusedMultiplyAdd(x[i], scale, shift), 0);
    }

    static (double G, double Gx) MaskedSums(float* x, float* dy, int length, float scale, float shift, float mean)
    {
        int w = Vector<float>.Count, i = 0;
        var a = new Vector<float>(scale);
        var b = new Vector<float>(shift);
        var m = new Vector<float>(mean);
        Vector<float> g0 = default, g1 = default, gx0 = default, gx1 = default;
        for (; i <= length - 2 * w; i += 2 * w)
        {
            var x0 = Load(x + i);
            var x1 = Load(x + i + w);
            var m0 = MaskedGradient(x0, Load(dy + i), a, b);
            var m1 = MaskedGradient(x1, Load(dy + i + w), a, b);
            g0 += m0;
            g1 += m1;
            gx0 = Vector.FusedMultiplyAdd(m0, x0 - m, gx0);
            gx1 = Vector.FusedMultiplyAdd(m1, x1 - m, gx1);
        }
        for (; i <= length - w; i += w)
        {
            var x0 = Load(x + i);
            var m0 = MaskedGradient(x0, Load(dy + i), a, b);
            g0 += m0;
            gx0 = Vector.FusedMultiplyAdd(m0, x0 - m, gx0);
        }
        double sumG = Vector.Sum(g0 + g1), sumGx = Vector.Sum(gx0 + gx1);
        for (; i < length; i++)
        {
            float g = MathF.FusedMultiplyAdd(x[i], scale, shift) > 0 ? dy[i] : 0;
            sumG += g;
            sumGx += g * (x[i] - mean);
        }
        return (sumG, sumGx);
    }

    static void InputGradient(float* x, float* dy, float* dx, int length, float scale, float shift, float k, float k0)
    {
        var a = new Vector<float>(scale);
        var b = new Vector<float>(shift);
        var kv = new Vector<float>(k);
        var k0v = new Vector<float>(k0);
        int i = 0;
        for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var xv = Load(x + i);
            Store(MaskedGradient(xv, Load(dy + i), a, b) * a - xv * kv + k0v, dx + i);
        }
        for (; i < length; i++)
        {
            float g = MathF.FusedMultiplyAdd(x[i], scale, shift) > 0 ? dy[i] : 0;
            dx[i] = g * scale - x[i] * k + k0;
        }
    }

    static Vector<float> MaskedGradient(Vector<float> x, Vector<float> dy, Vector<float> scale, Vector<float> shift) =>
        Vector.ConditionalSelect(Vector.GreaterThan(Vector.FusedMultiplyAdd(x, scale, shift), Vector<float>.Zero), dy, Vector<float>.Zero);

    static Vector<float> Load(float* p) => Vector.Load(p);
    static void Store(Vector<float> v, float* p) => v.Store(p);
}
