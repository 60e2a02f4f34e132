using System.Diagnostics;
using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Worker;

/// <summary>
/// Checks that this machine can run a worker: TorchSharp loads, and a CondenseNet trains a few steps on the device.
/// Useful on a new node before it joins a cluster.
/// </summary>
static class SelfTest
{
    public static int Run(Device device, int steps, TextWriter output)
    {
        torch.manual_seed(0);
        var config = CondenseNetConfig.Preset("condensenet-86", "cifar10");
        using var model = new CondenseNet(config).to(device);
        using var optimizer = optim.SGD(model.parameters(), 0.02, momentum: 0.9);
        using var x = torch.randn(16, config.InChannels, config.InputSize, config.InputSize, device: device);
        using var y = torch.randint(0, config.NumClasses, [16], dtype: ScalarType.Int64, device: device);

        output.WriteLine($"libtorch threads: {torch.get_num_threads()}, device: {device}, model: condensenet-86 ({config})");
        var times = new List<double>();
        float firstLoss = 0, lastLoss = 0;
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            loss.backward();
            optimizer.step();
            float value = loss.item<float>();
            times.Add(clock.Elapsed.TotalMilliseconds);
            if (step == 0) firstLoss = value;
            lastLoss = value;
            output.WriteLine($"step {step + 1}/{steps}: loss {value:F4}, {times[^1]:F0} ms");
        }
        times.Sort();
        output.WriteLine($"summary: {steps} steps of batch 16, median {times[times.Count / 2]:F0} ms per step, loss {firstLoss:F3} -> {lastLoss:F3}");
        if (!(lastLoss < firstLoss))
        {
            output.WriteLine("self-test failed: the loss did not fall on a repeated batch");
            return 1;
        }
        return 0;
    }
}
