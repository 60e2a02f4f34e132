using System.Buffers;
using System.Numerics.Tensors;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Arithmetic on float32 payloads and their half-float form (little-endian on the wire, the byte order of every
/// platform TorchSharp runs on; <see cref="RingFrame"/> describes the frames that carry them).
/// </summary>
public static class FloatPayload
{
    /// <summary>target[i] += source[i]; elementwise, so vectorizing does not change a single bit of the result.</summary>
    public static void AddTo(ReadOnlySpan<float> source, Span<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"{source.Length} values for {target.Length} places");
        TensorPrimitives.Add(target, source, target);
    }

    /// <summary>
    /// Bounds of <see cref="HalfExponent"/>: float.MaxValue · 2^-113 fits a half, and with 2^-100 the smallest half
    /// (2^-24) still decodes to a normal float.
    /// </summary>
    public const int MinHalfExponent = -100, MaxHalfExponent = 113;

    /// <summary>
    /// The smallest e for which every value times 2^-e fits a half float (|x| ≤ 65504): the largest value lands in
    /// the half's top octave, so small gradients keep their digits instead of vanishing below the half's range, and
    /// large ones cannot overflow. Powers of two scale exactly, so only the half's rounding changes a value. Zero and
    /// non-finite values give 0 (NaN and infinities travel as they are).
    /// </summary>
    public static int HalfExponent(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty) return 0;
        float largest = MathF.Abs(TensorPrimitives.MaxMagnitude(values));
        if (!float.IsFinite(largest) || largest == 0) return 0;
        float top = (float)Half.MaxValue;
        int e = Math.Clamp((int)MathF.Ceiling(MathF.Log2(largest / top)), MinHalfExponent, MaxHalfExponent);
        while (e < MaxHalfExponent && largest * MathF.ScaleB(1, -e) > top) e++;                      // Log2's rounding
        while (e > MinHalfExponent && largest * MathF.ScaleB(1, -(e - 1)) <= top) e--;
        return e;
    }

    /// <summary>target = half(source · 2^-exponent).</summary>
    public static void ToHalf(ReadOnlySpan<float> source, int exponent, Span<Half> target)
    {
        if (exponent == 0)
        {
            TensorPrimitives.ConvertToHalf(source, target);
            return;
        }
        float[] scaled = ArrayPool<float>.Shared.Rent(source.Length);
        TensorPrimitives.Multiply(source, MathF.ScaleB(1, -exponent), scaled.AsSpan(0, source.Length));
        TensorPrimitives.ConvertToHalf(scaled.AsSpan(0, source.Length), target);
        ArrayPool<float>.Shared.Return(scaled);
    }

    /// <summary>target = float(source) · 2^exponent; exact.</summary>
    public static void FromHalf(ReadOnlySpan<Half> source, int exponent, Span<float> target)
    {
        var values = target[..source.Length];
        TensorPrimitives.ConvertToSingle(source, values);
        ScaleByPowerOfTwo(values, exponent);
    }

    /// <summary>values · 2^exponent in place; exact while the results stay normal floats.</summary>
    public static void ScaleByPowerOfTwo(Span<float> values, int exponent)
    {
        if (exponent != 0) TensorPrimitives.Multiply(values, MathF.ScaleB(1, exponent), values);
    }

    /// <summary>
    /// Rounds <paramref name="values"/> in place to what a half-float frame carries, so that the rank that sends
    /// them holds the same bits as the ranks that receive them. Rounding again changes nothing.
    /// </summary>
    public static void RoundThroughHalf(Span<float> values)
    {
        int exponent = HalfExponent(values);
        Half[] halves = ArrayPool<Half>.Shared.Rent(values.Length);
        ToHalf(values, exponent, halves);
        FromHalf(halves.AsSpan(0, values.Length), exponent, values);
        ArrayPool<Half>.Shared.Return(halves);
    }
}
