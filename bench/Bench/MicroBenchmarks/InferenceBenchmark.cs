using BenchmarkDotNet.Attributes;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench.MicroBenchmarks;

/// <summary>
/// Whole-model inference of CondenseNet-86 on 1x32x32 (Fashion-MNIST) inputs: the masked training-form model in eval
/// mode against the converted model (index_select + grouped convolution + shuffle) made from it, as the official code
/// runs it and compiled for inference (<see cref="CondensedInference"/>), at batch 1 and 64. All three are the same
/// fully condensed network with random weights. The compiled model measures its per-layer forms in the setup.
/// </summary>
public class InferenceBenchmark
{
    [Params(1, 64)]
    public int BatchSize { get; set; }

    CondenseNet masked = null!, converted = null!;
    CondensedInference compiled = null!;
    Tensor images = null!;

    [GlobalSetup]
    public void Setup()
    {
        TorchRuntime.SetThreads(MicroSuite.TorchThreads);
        (masked, converted) = FullyCondensedModels();
        var config = masked.Config;
        images = torch.randn(BatchSize, config.InChannels, config.InputSize, config.InputSize);
        compiled = CondensedInference.Compile(converted);
        using (var _ = torch.no_grad()) compiled.Forward(images).Dispose(); // chooses each layer's forms for this batch size
    }

    [Benchmark(Baseline = true)]
    public void MaskedModel() => Infer(masked);

    [Benchmark]
    public void ConvertedModel() => Infer(converted);

    [Benchmark]
    public void CompiledConvertedModel() => Infer(compiled.Forward);

    void Infer(CondenseNet model) => Infer(model.forward);

    void Infer(Func<Tensor, Tensor> forward)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        forward(images);
    }

    /// <summary>CondenseNet-86 for 1x32x32 images with random weights (seed 0), fully condensed, and its converted model; both in eval mode.</summary>
    internal static (CondenseNet Masked, CondenseNet Converted) FullyCondensedModels()
    {
        torch.manual_seed(0);
        var masked = new CondenseNet(CondenseNetConfig.Preset("condensenet-86", "fashion-mnist"));
        CondenseFully(masked);
        var converted = Conversion.Convert(masked);
        masked.eval();
        converted.eval();
        return (masked, converted);
    }

    /// <summary>Takes every layer through all C-1 drops at the schedule's stage boundaries (one call moves a layer by one drop at most).</summary>
    static void CondenseFully(CondenseNet model)
    {
        int condenseFactor = model.Config.CondenseFactor, layers = model.LearnedLayers.Count();
        for (int stage = 1; stage < condenseFactor; stage++)
        {
            double progress = stage / (2.0 * (condenseFactor - 1));
            int moved = ModelCondensing.Apply(model, progress);
            if (moved != layers) throw new InvalidOperationException($"stage {stage}: {moved} of {layers} layers condensed");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        compiled.Dispose();
        masked.Dispose();
        converted.Dispose();
        images.Dispose();
    }
}
