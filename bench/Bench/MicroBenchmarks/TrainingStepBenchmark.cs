using BenchmarkDotNet.Attributes;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench.MicroBenchmarks;

/// <summary>
/// One training step of CondenseNet-86 (training form) through the engine every worker runs, as the worker's selftest
/// drives it: forward, cross-entropy, backward into the flat gradient buffer, Nesterov SGD; batch 64 of 1x32x32 images.
/// </summary>
public class TrainingStepBenchmark
{
    const int BatchSize = 64;
    const double LearningRate = 0.02;

    TrainingEngine engine = null!;
    Tensor images = null!, labels = null!;
    long step;

    [GlobalSetup]
    public void Setup()
    {
        TorchRuntime.SetThreads(MicroSuite.TorchThreads);
        var config = CondenseNetConfig.Preset("condensenet-86", "fashion-mnist");
        engine = new TrainingEngine(new TrainingOptions { Model = config, Dataset = "fashion-mnist", BatchSize = BatchSize }, torch.CPU);
        images = torch.randn(BatchSize, config.InChannels, config.InputSize, config.InputSize);
        labels = torch.randint(0, config.NumClasses, [BatchSize], dtype: ScalarType.Int64);
    }

    [Benchmark]
    public void TrainingStep()
    {
        engine.BeginStep();
        engine.Accumulate(images, labels, step++, microBatch: 0);
        engine.ApplyUpdate(LearningRate);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        engine.Dispose();
        images.Dispose();
        labels.Dispose();
    }
}
