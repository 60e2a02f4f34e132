using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;
using Xunit;

namespace CondenseCluster.Tests;

public class MaskWireTests
{
    [Fact]
    public void KeptColumnsSurviveBitPackingAndTheChecksumSeesOneBit()
    {
        var random = new Random(5);
        var kept = new bool[4, 13];
        for (int g = 0; g < 4; g++)
            for (int j = 0; j < 13; j++)
                kept[g, j] = random.Next(2) == 1;
        var bits = MaskWire.Pack(kept);
        Assert.Equal(7, bits.Length); // 52 bits
        Assert.Equal(kept, MaskWire.Unpack(bits, 4, 13));

        var flipped = (bool[,])kept.Clone();
        flipped[3, 12] = !flipped[3, 12];
        Assert.NotEqual(ModelCondensing.Checksum([new LayerMask(1, kept)]), ModelCondensing.Checksum([new LayerMask(1, flipped)]));
        Assert.NotEqual(ModelCondensing.Checksum([new LayerMask(1, kept)]), ModelCondensing.Checksum([new LayerMask(2, kept)]));
        Assert.Throws<ArgumentException>(() => MaskWire.Unpack(bits, 4, 20));
    }

    [Fact]
    public void ImportanceSurvivesTheWireAndAWrongShapeIsNamed()
    {
        var importance = new float[3, 5];
        for (int g = 0; g < 3; g++)
            for (int j = 0; j < 5; j++)
                importance[g, j] = g * 10 + j + 0.25f;
        var report = MaskWire.Importance(7, 2, importance);
        Assert.Equal((7L, 2, 60), (report.MaskVersion, report.Layer, report.Values.Length));
        Assert.Equal(importance, report.Matrix(3, 5));

        var error = Assert.Throws<ArgumentException>(() => report.Matrix(3, 6));
        Assert.Contains("layer 2 has 15 values, [3, 6] expected", error.Message);
    }
}
