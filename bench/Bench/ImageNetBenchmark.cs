using System.CommandLine;
using System.Diagnostics;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench;

/// <summary>
/// <c>imagenet</c>: what one CPU core does for a full-resolution ImageNet run: images/s through the loading pipeline at
/// 224x224 (the <c>loader</c> benchmark's measurement) and images/s through a CondenseNet-74 training step at 224x224
/// (the engine every worker runs: forward, cross-entropy, backward into the flat gradient buffer, Nesterov SGD, on one
/// repeated random batch), for each thread count; the ratio says how many loader cores a training core needs.
/// </summary>
static class ImageNetBenchmark
{
    const double LearningRate = 0.1;

    public static Command Command(string allocator)
    {
        var arch = new Option<string>("--arch") { Description = "condensenet-74-c4 or condensenet-74-c8", DefaultValueFactory = _ => "condensenet-74-c4" };
        var batch = new Option<int>("--batch-size") { Description = "images per training step", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--steps") { Description = "timed training steps per thread count, after one warm-up step", DefaultValueFactory = _ => 4 };
        var threads = new Option<int[]>("--threads") { Description = "thread counts, e.g. 1,2 (libtorch intra-op threads; loader threads)", CustomParser = a => Cli.PositiveIntegers(a, "1,2") ?? [], DefaultValueFactory = _ => [1, 2] };
        var images = new Option<int>("--images") { Description = "JPEGs of 500x375 per loading repetition", DefaultValueFactory = _ => 200 };
        var repeats = new Option<int>("--repeats") { Description = "timed loading repetitions per thread count", DefaultValueFactory = _ => 5 };
        var command = new Command("imagenet", "images/s per core at 224x224: JPEG loading and CondenseNet-74 training steps on the CPU")
        {
            arch, batch, steps, threads, images, repeats,
        };
        command.SetAction(result => Run(result.GetValue(arch)!, result.GetValue(batch), result.GetValue(steps), result.GetValue(threads)!,
            result.GetValue(images), result.GetValue(repeats), allocator));
        return command;
    }

    static int Run(string arch, int batchSize, int steps, int[] threadCounts, int images, int repeats, string allocator)
    {
        if (batchSize < 1 || steps < 1) throw new ArgumentException("--batch-size and --steps must be positive");
        Console.WriteLine($"allocator: {allocator}; {Environment.ProcessorCount} cores");
        var (_, loading) = LoaderBenchmark.Measure(images, folder: null, threadCounts, repeats, batchSize: 32);
        var config = CondenseNetConfig.Preset(arch, "imagenet");
        var training = threadCounts.Select(threads => (Threads: threads, StepMs: MedianStepMs(config, batchSize, steps, threads))).ToList();

        Console.WriteLine();
        Console.WriteLine($"summary (medians; per core = per thread while threads <= {Environment.ProcessorCount} cores): loading {images} JPEGs of 500x375 x {repeats}, "
            + $"{arch} training steps of {batchSize} x 3x{config.InputSize}x{config.InputSize} x {steps}");
        Console.WriteLine($"{"threads",7} {"load img/s",10} {"load img/s/core",15} {"step ms",8} {"train img/s",11} {"train img/s/core",16} {"loader cores per training core",30}");
        foreach (var ((threads, stepMs), load) in training.Zip(loading))
        {
            double train = batchSize * 1000 / stepMs, loadPerCore = load.Median / threads, trainPerCore = train / threads;
            Console.WriteLine($"{threads,7} {load.Median,10:F1} {loadPerCore,15:F1} {stepMs,8:F0} {train,11:F2} {trainPerCore,16:F2} {trainPerCore / loadPerCore,30:F3}");
        }
        return 0;
    }

    /// <summary>The median time of <paramref name="steps"/> training steps on one repeated random batch, after a warm-up step.</summary>
    static double MedianStepMs(CondenseNetConfig config, int batchSize, int steps, int threads)
    {
        TorchRuntime.SetThreads(threads);
        using var engine = new TrainingEngine(new TrainingOptions { Model = config, Dataset = "imagenet", BatchSize = batchSize }, torch.CPU);
        using var x = torch.randn(batchSize, config.InChannels, config.InputSize, config.InputSize);
        using var y = torch.randint(0, config.NumClasses, [batchSize], dtype: ScalarType.Int64);
        var times = new double[steps];
        for (int step = -1; step < steps; step++)
        {
            var clock = Stopwatch.StartNew();
            engine.BeginStep();
            engine.Accumulate(x, y, step + 1, microBatch: 0);
            engine.ApplyUpdate(LearningRate);
            if (step < 0) continue;
            times[step] = clock.Elapsed.TotalMilliseconds;
            Console.WriteLine($"threads {threads}, training step {step + 1}/{steps}: {times[step]:F0} ms ({batchSize * 1000 / times[step]:F2} images/s)");
        }
        return Statistics.Median(times);
    }
}
