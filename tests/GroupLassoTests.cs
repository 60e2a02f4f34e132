using CondenseCluster.Shared.Model;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests;

public class GroupLassoTests
{
    [Fact]
    public void MatchesAHandComputation()
    {
        // in = 4, out = 4, G = C = 2: group 0 = rows 0, 2; group 1 = rows 1, 3.
        using var layer = new LearnedGroupConv(4, 4, 2, 2, 0);
        float[] w = [1, 2, 0, 0, /**/ 3, 0, 0, 4, /**/ 2, 0, 0, 0, /**/ 0, 0, 1, 1];
        using (torch.no_grad()) layer.Weight.copy_(torch.tensor(w, 4, 4, 1, 1));

        // Group 0 columns: sqrt(1+4), sqrt(4+0), sqrt(max(0, 1e-6)), sqrt(1e-6); group 1: sqrt(9), 0→1e-3, sqrt(1), sqrt(16+1).
        double expected = Math.Sqrt(5) + 2 + 1e-3 + 1e-3 + 3 + 1e-3 + 1 + Math.Sqrt(17);
        Assert.Equal(expected, layer.LassoLoss().item<float>(), 4);

        // Masked weights do not count.
        layer.ApplyKeptColumns(new[,] { { true, true, true, false }, { true, true, true, false } }, 0);
        double masked = Math.Sqrt(5) + 2 + 1e-3 + 1e-3 + 3 + 1e-3 + 1 + 1e-3;
        Assert.Equal(masked, layer.LassoLoss().item<float>(), 4);
    }

    [Fact]
    public void IsZeroOnceTheStageReachesGMinusOne()
    {
        using var model = new CondenseNet(TinyModels.Config());
        Assert.True(model.GroupLasso().item<float>() > 0);
        ModelCondensing.Apply(model, 0.2);
        Assert.True(model.GroupLasso().item<float>() > 0);
        ModelCondensing.Apply(model, 0.5); // stage 3 = G - 1
        Assert.Equal(0f, model.GroupLasso().item<float>());
    }

    [Fact]
    public void HasAGradientForTheWeights()
    {
        using var model = new CondenseNet(TinyModels.Config());
        model.GroupLasso().backward();
        var grad = model.LearnedLayers.First().Layer.Weight.grad;
        Assert.NotNull(grad);
        Assert.True(grad!.abs().sum().item<float>() > 0);
    }
}
