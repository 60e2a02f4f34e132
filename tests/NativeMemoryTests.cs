using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>Measures the whole process's resident memory, so nothing else may run meanwhile: the data tests alone move it by tens of MiB.</summary>
[CollectionDefinition(nameof(NativeMemoryTests), DisableParallelization = true)]
public class NativeMemoryCollection;

[Collection(nameof(NativeMemoryTests))]
public class NativeMemoryTests
{
    [Fact]
    public void TwoThousandTrainingStepsKeepTheProcessMemoryFlat()
    {
        var options = new TrainingOptions
        {
            Model = new CondenseNetConfig { Stages = [2, 2], Growth = [4, 4], InChannels = 1, InputSize = 8, NumClasses = 10, DropoutRate = 0.1 },
            BatchSize = 8, MicroBatches = 2, Lasso = 1e-5, LearningRate = 0.01,
        };
        using var engine = new TrainingEngine(options, CPU);
        using var x = torch.randn(4, 1, 8, 8);
        using var y = torch.randint(0, 10, [4], dtype: ScalarType.Int64);

        void Step(int step)
        {
            engine.BeginStep();
            engine.Accumulate(x, y, step, 0);
            engine.Accumulate(x, y, step, 1);
            engine.ApplyUpdate(0.01);
            if (step == 1000) engine.Condense(0.3);
        }

        for (int i = 0; i < 200; i++) Step(i);
        long warm = ResidentBytes();
        for (int i = 200; i < 2000; i++) Step(i);
        long end = ResidentBytes();
        Assert.True(end <= warm * 1.10, $"resident memory grew from {warm >> 20} MiB to {end >> 20} MiB over 1,800 steps");
    }

    static long ResidentBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return ProcessMemory.Read().Resident;
    }
}
