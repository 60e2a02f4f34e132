using CondenseCluster.Shared.Model;
using Xunit;

namespace CondenseCluster.Tests;

public class CondensingScheduleTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void StageStartsAtEachBoundaryAndNotBefore(int c)
    {
        Assert.Equal(0, CondensingSchedule.StageAt(0, c));
        for (int k = 1; k < c; k++)
        {
            double boundary = k / (2.0 * (c - 1));
            Assert.Equal(k - 1, CondensingSchedule.StageAt(Math.BitDecrement(boundary), c));
            Assert.Equal(k, CondensingSchedule.StageAt(boundary, c));
            Assert.Equal(k, CondensingSchedule.StageAt(Math.BitIncrement(boundary), c));
        }
        Assert.Equal(c - 1, CondensingSchedule.StageAt(0.5, c));
        Assert.Equal(c - 1, CondensingSchedule.StageAt(0.75, c));
        Assert.Equal(c - 1, CondensingSchedule.StageAt(1.0, c));
    }

    [Fact]
    public void StagesOfConcreteStepsForFourStages()
    {
        // 600 steps, C = 4: boundaries at steps 100, 200, 300.
        var stages = Enumerable.Range(0, 600).Select(t => CondensingSchedule.StageAt(CondensingSchedule.Progress(t, 600), 4)).ToArray();
        Assert.Equal(Enumerable.Repeat(0, 100), stages[..100]);
        Assert.Equal(Enumerable.Repeat(1, 100), stages[100..200]);
        Assert.Equal(Enumerable.Repeat(2, 100), stages[200..300]);
        Assert.Equal(Enumerable.Repeat(3, 300), stages[300..]);
    }

    [Fact]
    public void ProgressZeroNeverMovesAndStagesNeverGoBack()
    {
        Assert.Null(CondensingSchedule.NextStage(0, 0, 4));
        Assert.Null(CondensingSchedule.NextStage(3, 0, 4));
        Assert.Null(CondensingSchedule.NextStage(2, 0.2, 4));
        Assert.Null(CondensingSchedule.NextStage(1, 1.0 / 6, 4));
        Assert.Equal(2, CondensingSchedule.NextStage(1, 2.0 / 6, 4));
    }

    [Fact]
    public void CrossingSeveralBoundariesAtOnceIsOneMove()
    {
        Assert.Equal(3, CondensingSchedule.NextStage(0, 0.9, 4));
        Assert.Equal(7, CondensingSchedule.NextStage(2, 0.5, 8));
    }

    [Fact]
    public void ModelDropsExactlyOncePerStageIncreaseEvenAcrossSeveralBoundaries()
    {
        using var model = new CondenseNet(TinyModels.Config(condenseFactor: 4));
        var layer = model.LearnedLayers.First().Layer;

        Assert.Equal(0, ModelCondensing.Apply(model, 0.1));            // still stage 0
        Assert.Equal(LearnedLayerCount(model), ModelCondensing.Apply(model, 0.4)); // 0 → 2 in one move
        Assert.Equal(2, layer.Stage);
        Assert.Equal(layer.InChannels - layer.InChannels / 4, KeptPerGroup(layer)); // one drop of in/C
        Assert.Equal(0, ModelCondensing.Apply(model, 0.4));             // same progress again: nothing
        Assert.Equal(LearnedLayerCount(model), ModelCondensing.Apply(model, 0.5));
        Assert.Equal(3, layer.Stage);
        Assert.Equal(layer.InChannels - 2 * (layer.InChannels / 4), KeptPerGroup(layer));
    }

    [Fact]
    public void EvaluatingAtProgressZeroAfterTrainingChangesNothing()
    {
        using var model = new CondenseNet(TinyModels.Config(condenseFactor: 4));
        foreach (double p in new[] { 0.2, 0.34, 0.5 }) ModelCondensing.Apply(model, p);
        var before = model.LearnedLayers.Select(l => l.Layer.Mask.clone()).ToArray();

        Assert.Equal(0, ModelCondensing.Apply(model, 0));
        foreach (var (layer, mask) in model.LearnedLayers.Zip(before))
        {
            Assert.True(Tensors.Identical(layer.Layer.Mask, mask));
            Assert.Equal(3, layer.Layer.Stage);
        }
    }

    static int LearnedLayerCount(CondenseNet model) => model.LearnedLayers.Count();

    static int KeptPerGroup(LearnedGroupConv layer)
    {
        var kept = layer.KeptColumns();
        return Enumerable.Range(0, layer.InChannels).Count(j => kept[0, j]);
    }
}
