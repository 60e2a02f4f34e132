using CondenseCluster.Shared.Model;
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
        torch.manual_seed(1);
        using var model = new CondenseNet(new CondenseNetConfig
        {
            Stages = [2, 2], Growth = [4, 4], InChannels = 1, InputSize = 8, NumClasses = 10, DropoutRate = 0.1,
        });
        using var optimizer = optim.SGD(model.parameters(), 0.01, momentum: 0.9, nesterov: true, weight_decay: 1e-4);
        using var x = torch.randn(8, 1, 8, 8);
        using var y = torch.randint(0, 10, [8], dtype: ScalarType.Int64);

        void Step(int i)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.forward(x), y) + 1e-5 * model.GroupLasso();
            loss.backward();
            optimizer.step();
            if (i == 1000) ModelCondensing.Apply(model, 0.3);
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
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:"));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
