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
        var bits = ModelCondensing.Pack(kept);
        Assert.Equal(7, bits.Length); // 52 bits
        Assert.Equal(kept, ModelCondensing.Unpack(bits, 4, 13));

        var flipped = (bool[,])kept.Clone();
        flipped[3, 12] = !flipped[3, 12];
        Assert.NotEqual(ModelCondensing.Checksum([new LayerMask(1, kept)]), ModelCondensing.Checksum([new LayerMask(1, flipped)]));
        Assert.NotEqual(ModelCondensing.Checksum([new LayerMask(1, kept)]), ModelCondensing.Checksum([new LayerMask(2, kept)]));
        Assert.Throws<ArgumentException>(() => ModelCondensing.Unpack(bits, 4, 20));
    }
}
