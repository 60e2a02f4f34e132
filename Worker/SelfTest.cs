using System.CommandLine;
using System.Diagnostics;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Worker;

/// <summary>
/// Checks that this machine can run a worker: TorchSharp loads, and the training engine runs CondenseNet-86 steps on
/// the device, on one repeated synthetic batch. Prints each step's time and the median, the figure to compare with
/// bench/pytorch/step_time.py run the same way.
/// </summary>
static class SelfTest
{
    public static Command Command(string allocator)
    {
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)" };
        var steps = new Option<int>("--steps") { Description = "training steps to run", DefaultValueFactory = _ => 5 };
        var batch = new Option<int>("--batch-size") { Description = "images per step", DefaultValueFactory = _ => 16 };
        var dataset = new Option<string>("--dataset") { Description = "input shape of: cifar10, fashion-mnist, imagenet", DefaultValueFactory = _ => "cifar10" };
        var command = new Command("selftest", "load TorchSharp and train a CondenseNet-86 for a few steps on the device") { device, threads, steps, batch, dataset };
        command.SetAction(result =>
        {
            TorchRuntime.SetThreads(result.GetValue(threads));
            Console.WriteLine($"allocator: {allocator}");
            return Run(TorchRuntime.ParseDevice(result.GetValue(device)!), result.GetValue(dataset)!, result.GetValue(batch),
                Math.Max(3, result.GetValue(steps)), Console.Out);
        });
        return command;
    }

    public static int Run(Device device, string dataset, int batchSize, int steps, TextWriter output)
    {
        var config = CondenseNetConfig.Preset("condensenet-86", dataset);
        var options = new TrainingOptions { Model = config, Dataset = dataset, BatchSize = batchSize };
        using var engine = new TrainingEngine(options, device);
        using var x = torch.randn(batchSize, config.InChannels, config.InputSize, config.InputSize);
        using var y = torch.randint(0, config.NumClasses, [batchSize], dtype: ScalarType.Int64);

        output.WriteLine($"libtorch threads: {torch.get_num_threads()}, device: {device}, condensenet-86 ({config}), batch {batchSize}");
        var times = new List<double>();
        double firstLoss = 0, lastLoss = 0;
        for (int step = 0; step < steps; step++)
        {
            var clock = Stopwatch.StartNew();
            engine.BeginStep();
            var result = engine.Accumulate(x, y, step, 0);
            engine.ApplyUpdate(0.02);
            times.Add(clock.Elapsed.TotalMilliseconds);
            double loss = result.LossSum / result.Samples;
            if (step == 0) firstLoss = loss;
            lastLoss = loss;
            output.WriteLine($"step {step + 1}/{steps}: loss {loss:F4}, {times[^1]:F0} ms");
        }
        var measured = times.Skip(Math.Min(2, steps - 1)).Order().ToArray();  // the first steps warm the allocator up
        output.WriteLine($"summary: median {measured[measured.Length / 2]:F0} ms per step over {measured.Length} steps after warm-up, loss {firstLoss:F3} -> {lastLoss:F3}");
        if (!(lastLoss < firstLoss))
        {
            output.WriteLine("self-test failed: the loss did not fall on a repeated batch");
            return 1;
        }
        return 0;
    }
}
