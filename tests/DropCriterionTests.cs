using CondenseCluster.Shared.Model;
using Xunit;

namespace CondenseCluster.Tests;

public class DropCriterionTests
{
    [Fact]
    public void ImportanceSumsAbsoluteMaskedWeightsOfEachGroupsRows()
    {
        // out = 4, in = 3, G = 2: rows 0 and 2 form group 0, rows 1 and 3 group 1.
        float[] weight = [1, -2, 3, /**/ -4, 5, -6, /**/ 7, -8, 9, /**/ 10, 11, -12];
        float[] mask = [1, 1, 0, /**/ 1, 0, 1, /**/ 1, 1, 0, /**/ 1, 0, 1];
        var importance = DropCriterion.Importance(weight, mask, 4, 3, 2);
        Assert.Equal(new float[,] { { 1 + 7, 2 + 8, 0 }, { 4 + 10, 0, 6 + 12 } }, importance);
    }

    [Fact]
    public void DropsTheLeastImportantKeptColumnsOfEachGroup()
    {
        var importance = new float[,] { { 5, 1, 3, 2 }, { 0.5f, 9, 8, 0.25f } };
        var kept = AllKept(2, 4);
        var result = DropCriterion.Drop(importance, kept, 2);
        Assert.Equal(new[,] { { true, false, true, false }, { false, true, true, false } }, result);
        Assert.True(kept[0, 1]); // input not modified
    }

    [Fact]
    public void AlreadyDroppedColumnsAreNeverChosenAgainEvenWhenOthersScoreZero()
    {
        // Column 3 of group 0 is kept but all its weights are zero: it ties with the dropped column 0.
        var importance = new float[,] { { 0, 4, 2, 0 } };
        var kept = new[,] { { false, true, true, true } };
        var result = DropCriterion.Drop(importance, kept, 1);
        Assert.Equal(new[,] { { false, true, true, false } }, result);
    }

    [Fact]
    public void TiesAreBrokenByColumnIndex()
    {
        var importance = new float[,] { { 2, 1, 1, 1, 3, 1 } };
        var result = DropCriterion.Drop(importance, AllKept(1, 6), 3);
        Assert.Equal(new[,] { { true, false, false, false, true, true } }, result);
    }

    [Theory]
    [InlineData(2, 16, 8)]
    [InlineData(4, 16, 12)]
    [InlineData(8, 32, 24)]
    public void AfterCMinusOneDropsEveryGroupKeepsExactlyInOverC(int c, int outChannels, int inChannels)
    {
        var random = new Random(c);
        var mask = Enumerable.Repeat(1f, outChannels * inChannels).ToArray();
        var kept = DropCriterion.KeptColumns(mask, inChannels, c);
        for (int stage = 1; stage < c; stage++)
        {
            var weight = Enumerable.Range(0, outChannels * inChannels).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
            // Some ties and zero columns as well.
            for (int o = 0; o < outChannels; o++) weight[o * inChannels] = 0;
            kept = DropCriterion.Drop(DropCriterion.Importance(weight, mask, outChannels, inChannels, c), kept, inChannels / c);
            mask = DropCriterion.ExpandMask(kept, outChannels);
            for (int g = 0; g < c; g++)
                Assert.Equal(inChannels - stage * (inChannels / c), Enumerable.Range(0, inChannels).Count(j => kept[g, j]));
        }
        for (int g = 0; g < c; g++)
            Assert.Equal(inChannels / c, Enumerable.Range(0, inChannels).Count(j => kept[g, j]));
    }

    [Fact]
    public void ExpandedMaskRowsFollowInterleavedGroups()
    {
        var kept = new[,] { { true, false }, { false, true } };
        Assert.Equal(new float[] { 1, 0, 0, 1, 1, 0, 0, 1 }, DropCriterion.ExpandMask(kept, 4));
        Assert.Equal(kept, DropCriterion.KeptColumns(DropCriterion.ExpandMask(kept, 4), 2, 2));
    }

    [Fact]
    public void DroppingMoreThanAGroupKeepsIsRefused()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            DropCriterion.Drop(new float[1, 2], new[,] { { true, false } }, 2));
        Assert.Contains("keeps 1 columns and cannot drop 2", error.Message);
    }

    static bool[,] AllKept(int groups, int inputs)
    {
        var kept = new bool[groups, inputs];
        for (int g = 0; g < groups; g++) for (int j = 0; j < inputs; j++) kept[g, j] = true;
        return kept;
    }
}
