using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

/// <summary>The half-float form of ring payloads: scaled so nothing overflows, rounded once, stable when rounded again.</summary>
public class FloatPayloadTests
{
    [Fact]
    public void TheExponentIsTheSmallestThatFitsTheLargestValueIntoAHalf()
    {
        Assert.Equal(0, FloatPayload.HalfExponent([]));
        Assert.Equal(0, FloatPayload.HalfExponent([0f, -0f]));
        Assert.Equal(0, FloatPayload.HalfExponent([1e-3f, -65504f]));
        Assert.Equal(0, FloatPayload.HalfExponent([float.NaN, 1e9f])); // NaN travels as NaN, as in float32
        Assert.Equal(FloatPayload.MinHalfExponent, FloatPayload.HalfExponent([1e-35f]));
        foreach (float largest in new[] { 65505f, 1e6f, -3e9f, float.MaxValue, 32767f, 1e-3f, -4.2e-9f })
        {
            int e = FloatPayload.HalfExponent([largest / 4, largest]);
            Assert.True(MathF.Abs(largest) * MathF.ScaleB(1, -e) <= 65504f, $"{largest}: 2^{e} is too small");
            Assert.True(MathF.Abs(largest) * MathF.ScaleB(1, -(e - 1)) > 65504f, $"{largest}: 2^{e} is not the smallest");
        }
    }

    [Fact]
    public void RoundingKeepsElevenSignificantBitsAndIsStableWhenRepeated()
    {
        var random = new Random(3);
        foreach (float scale in new[] { 1e-3f, 1f, 1e5f, 1e20f })
        {
            float[] values = [.. Enumerable.Range(0, 10_000).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale)];
            float largest = values.Max(MathF.Abs);
            float[] rounded = [.. values];
            FloatPayload.RoundThroughHalf(rounded);
            for (int i = 0; i < values.Length; i++)
            {
                // 2^-11 of the value; below the half's normal range (2^-15 of the largest, scaled to the top octave) the
                // step is absolute, 2^-39 of the largest.
                float bound = MathF.Max(MathF.Abs(values[i]) * MathF.ScaleB(1, -11), largest * MathF.ScaleB(1, -40));
                Assert.True(MathF.Abs(rounded[i] - values[i]) <= bound, $"scale {scale}: {values[i]} became {rounded[i]}");
            }
            float[] again = [.. rounded];
            FloatPayload.RoundThroughHalf(again);
            Assert.Equal(rounded, again);
        }
    }

    [Fact]
    public void ScaledHalvesComeBackExactlyWhenTheValuesAreHalves()
    {
        float[] values = [3f * 65536, -0.5f * 65536, 1024f * 65536, 0];
        int e = FloatPayload.HalfExponent(values);
        var halves = new Half[values.Length];
        FloatPayload.ToHalf(values, e, halves);
        var back = new float[values.Length];
        FloatPayload.FromHalf(halves, e, back);
        Assert.Equal(values, back);
    }
}
