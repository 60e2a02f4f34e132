using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests.Training;

/// <summary>
/// libtorch's random generator is global: a test running beside these could draw from it between an engine's seeding
/// and its dropout, so they run alone.
/// </summary>
[CollectionDefinition(nameof(TrainingEngineTests), DisableParallelization = true)]
public class TrainingEngineCollection;

[Collection(nameof(TrainingEngineTests))]
public class TrainingEngineTests
{
    static TrainingOptions Options(int microBatches, double lasso = 0, int batchSize = 8) => new()
    {
        Arch = "custom", Model = TinyModels.Config() with { InChannels = 1 }, BatchSize = batchSize, MicroBatches = microBatches,
        Lasso = lasso, Seed = 5,
    };

    [Fact]
    public void LabelSmoothingTrainsOnTheSmoothedCrossEntropy()
    {
        const double epsilon = 0.1;
        torch.manual_seed(4);
        using var x = torch.randn(6, 1, 16, 16);
        using var y = torch.randint(0, 10, [6], dtype: ScalarType.Int64);
        using var engine = new TrainingEngine(Options(1) with { LabelSmoothing = epsilon }, CPU);
        engine.BeginStep();
        var result = engine.Accumulate(x, y, 0, 0);

        // By hand: (1 − ε)·(−log p of the label) + ε·(the mean of −log p over the classes), averaged over the samples.
        using var logP = nn.functional.log_softmax(engine.Model.forward(x), 1);
        double byHand = 0;
        for (int i = 0; i < 6; i++)
            byHand += (1 - epsilon) * -logP[i, y[i].item<long>()].item<float>() + epsilon * -logP[i].mean().item<float>();
        Assert.Equal(byHand, result.LossSum, 4);
    }

    [Fact]
    public void AStepWhoseGradientIsNotFiniteIsSkippedAndTooManyInARowStopTheRun()
    {
        torch.manual_seed(4);
        using var x = torch.randn(4, 1, 16, 16);
        using var y = torch.randint(0, 10, [4], dtype: ScalarType.Int64);
        using var engine = new TrainingEngine(Options(1) with { MaxSkippedSteps = 2 }, CPU);
        bool Step(float poison)
        {
            engine.BeginStep();
            engine.Accumulate(x, y, 0, 0);
            if (!float.IsFinite(poison)) engine.Gradients.Flat[7].fill_(poison);
            return engine.ApplyUpdate(0.1);
        }
        string Weights() => ReplicaChecksum.Weights(engine.Model);
        string Momentum() => string.Join(",", engine.Optimizer.Buffers.Select(b => b.abs().sum().item<float>()));

        var (weights, momentum) = (Weights(), Momentum());
        Assert.False(Step(float.NaN));
        Assert.Equal((weights, momentum, 1), (Weights(), Momentum(), engine.SkippedInARow)); // nothing moved
        Assert.True(Step(0)); // a finite step updates and resets the count
        Assert.Equal(0, engine.SkippedInARow);
        Assert.NotEqual(weights, Weights());
        Assert.False(Step(float.PositiveInfinity));
        Assert.False(Step(float.NegativeInfinity));
        var error = Assert.Throws<InvalidOperationException>(() => Step(float.NaN));
        Assert.Contains("not finite (NaN or ∞) in 3 steps in a row, more than --max-skipped-steps 2", error.Message);
    }

    [Theory]
    [InlineData(0.05)]
    [InlineData(1e9)] // above the gradient's norm: no change
    public void ClippingScalesTheGradientDownToTheGlobalNormAsPyTorchDoes(double maxNorm)
    {
        torch.manual_seed(4);
        using var x = torch.randn(4, 1, 16, 16);
        using var y = torch.randint(0, 10, [4], dtype: ScalarType.Int64);
        using var engine = new TrainingEngine(Options(1) with { ClipGradientNorm = maxNorm }, CPU);
        engine.BeginStep();
        engine.Accumulate(x, y, 0, 0);
        using var raw = engine.Gradients.Flat.clone();
        double norm = engine.Gradients.Norm();
        Assert.True(norm > 0.05, $"the test needs a gradient norm above 0.05, not {norm}");
        Assert.True(engine.ApplyUpdate(0.1));
        // torch.nn.utils.clip_grad_norm_: times max/(norm + 1e-6) when that is below 1.
        double factor = Math.Min(1, maxNorm / (norm + 1e-6));
        Assert.Equal(Math.Min(norm, maxNorm), engine.Gradients.Norm(), 4);
        Assert.True(torch.allclose(engine.Gradients.Flat, raw * factor, rtol: 1e-5, atol: 1e-9));
    }

    [Fact]
    public void BackwardAccumulatesStraightIntoTheFlatBuffer()
    {
        using var engine = new TrainingEngine(Options(1), CPU);
        engine.BeginStep();
        using var x = torch.randn(4, 1, 16, 16);
        using var y = torch.randint(0, 10, [4], dtype: ScalarType.Int64);
        engine.Accumulate(x, y, 0, 0);
        double fromViews = engine.Model.parameters().Sum(p => p.grad!.abs().sum().item<float>());
        Assert.True(fromViews > 0);
        Assert.Equal(fromViews, engine.Gradients.Flat.abs().sum().item<float>(), fromViews * 1e-5);
        engine.BeginStep();
        Assert.Equal(0f, engine.Model.parameters().Sum(p => p.grad!.abs().sum().item<float>()));
    }

    [Theory]
    [InlineData(0, 0.0)]
    [InlineData(1e-3, 0.0)]
    [InlineData(1e-3, 0.5)] // condensed once, dropout on
    public void BackwardStepByStepGivesTheSameGradientsAndReportsEachStepsFinalRange(double lasso, double condensedAt)
    {
        var options = Options(1, lasso) with { Model = TinyModels.Config() with { InChannels = 1, DropoutRate = condensedAt > 0 ? 0.1 : 0 } };
        using var whole = new TrainingEngine(options, CPU);
        using var chained = new TrainingEngine(options, CPU);
        whole.Condense(condensedAt);
        chained.Condense(condensedAt);
        using var x = torch.randn(4, 1, 16, 16);
        using var y = torch.randint(0, 10, [4], dtype: ScalarType.Int64);
        whole.BeginStep();
        chained.BeginStep();
        var a = whole.Accumulate(x, y, 3, 0);
        var finalFrom = new List<long>();
        var b = chained.Accumulate(x, y, 3, 0, finalFrom.Add);

        Assert.Equal(a, b);
        Assert.Equal(whole.Gradients.Flat.data<float>().ToArray(), chained.Gradients.Flat.data<float>().ToArray());
        // One report per chain step, from the end of the buffer to its start, each at a step boundary.
        var ends = chained.ChainStepEnds();
        Assert.Equal(ends.Length, finalFrom.Count);
        Assert.Equal(new long[] { 0 }.Concat(ends.SkipLast(1)).Reverse(), finalFrom);
        Assert.Equal(chained.Gradients.Length, ends[^1]);
    }

    [Fact]
    public void TheGradientLayoutMarksEachLearnedWeightWithItsKeptColumns()
    {
        using var engine = new TrainingEngine(Options(1), CPU);
        engine.Condense(0.5);
        var layout = engine.GradientLayout();
        Assert.Equal(engine.Gradients.Length, layout.Sum(p => p.Length));
        var masked = layout.Where(p => p.KeptColumns is not null).ToArray();
        Assert.Equal(engine.Model.LearnedLayers.Count(), masked.Length);
        foreach (var (layer, parameter) in engine.Model.LearnedLayers.Select(l => l.Layer).Zip(masked))
        {
            Assert.Equal(layer.OutChannels, parameter.Rows);
            Assert.Equal(layer.KeptColumns(), parameter.KeptColumns);
        }
        // A condensing call moves each layer by one drop: each group has dropped a quarter of its inputs (C = 4).
        long dropped = masked.Sum(p => p.Length / 4);
        Assert.Equal(engine.Gradients.Length - dropped, GradientBuckets.KeptRuns(layout).Sum(r => r.Length));
    }

    [Theory]
    [InlineData(8, 2, 0)]
    [InlineData(8, 2, 1e-3)]
    [InlineData(10, 3, 1e-3)] // micro-batches of 4, 3 and 3 samples
    public void MicroBatchUpdateEqualsTheHandGradientsWeightedBySize(int batch, int m, double lasso)
    {
        var plan = new MicroBatchPlan(batch, m, batch, 1);
        torch.manual_seed(9);
        using var x = torch.randn(batch, 1, 16, 16);
        using var y = torch.randint(0, 10, [batch], dtype: ScalarType.Int64);

        using var engine = new TrainingEngine(Options(m, lasso, batch), CPU);
        // The hand-made reference: same initial weights, PyTorch's own SGD, micro-batches run one at a time.
        using var reference = new CondenseNet(engine.Model.Config);
        reference.load_state_dict(engine.Model.state_dict());
        var referenceParameters = reference.parameters().ToArray();
        using var sgd = optim.SGD(referenceParameters, 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-4);

        for (int step = 0; step < 3; step++)
        {
            engine.BeginStep();
            for (int micro = 0; micro < m; micro++)
                engine.Accumulate(x.narrow(0, plan.StartOf(micro), plan.SizeOf(micro)), y.narrow(0, plan.StartOf(micro), plan.SizeOf(micro)), step, micro,
                    lossWeight: plan.LossWeight(micro));
            engine.ApplyUpdate(0.05);

            var sums = referenceParameters.Select(p => torch.zeros_like(p)).ToArray();
            for (int micro = 0; micro < m; micro++)
            {
                reference.zero_grad();
                reference.train();
                var (start, size) = (plan.StartOf(micro), plan.SizeOf(micro));
                var loss = nn.functional.cross_entropy(reference.forward(x.narrow(0, start, size)), y.narrow(0, start, size));
                using var coefficient = lasso.ToScalar();
                if (lasso > 0) loss = loss + reference.GroupLasso().mul(coefficient);
                loss.backward();
                // The step's gradient is the mean over all B samples: each micro-batch's mean counts by its share b_m/B.
                using var share = ((double)size / batch).ToScalar();
                for (int i = 0; i < sums.Length; i++) sums[i].add_(referenceParameters[i].grad!.mul(share));
            }
            for (int i = 0; i < sums.Length; i++) referenceParameters[i].grad = sums[i];
            sgd.step();
        }

        foreach (var (name, tensor) in engine.Model.state_dict())
        {
            var other = reference.state_dict()[name].to(ScalarType.Float64);
            double scale = Math.Max(1e-3, other.abs().max().item<double>());
            Assert.True(torch.allclose(tensor.to(ScalarType.Float64), other, rtol: 0, atol: 1e-5 * scale), $"{name} differs from the hand computation");
        }
    }

    [Fact]
    public void StateRoundTripRestoresWeightsMasksStatisticsAndMomentum()
    {
        using var engine = new TrainingEngine(Options(1), CPU);
        using var x = torch.randn(8, 1, 16, 16);
        using var y = torch.randint(0, 10, [8], dtype: ScalarType.Int64);
        engine.BeginStep();
        engine.Accumulate(x, y, 0, 0);
        engine.ApplyUpdate(0.1);
        engine.Condense(0.2);

        var stream = new MemoryStream();
        engine.SaveState(new BinaryWriter(stream));
        using var restored = new TrainingEngine(Options(1) with { Seed = 99 }, CPU);
        stream.Position = 0;
        restored.LoadState(new BinaryReader(stream));

        foreach (var (name, tensor) in engine.Model.state_dict())
            Assert.True(Tensors.Identical(tensor, restored.Model.state_dict()[name]), name);
        foreach (var (a, b) in engine.Optimizer.Buffers.Zip(restored.Optimizer.Buffers))
            Assert.True(Tensors.Identical(a, b));
        Assert.Contains(engine.Optimizer.Buffers, b => b.abs().sum().item<float>() > 0);
    }
}
