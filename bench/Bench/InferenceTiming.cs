using System.CommandLine;
using System.Diagnostics;
using CondenseCluster.Bench.MicroBenchmarks;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench;

/// <summary>
/// <c>inference</c>: the masked model (training form, eval), the converted model as the official code runs it and
/// the compiled converted model (<see cref="CondensedInference"/>), timed in turn: each round runs one forward of
/// each, so that the machine's changing load falls on all three alike. BenchmarkDotNet's <c>InferenceBenchmark</c>
/// runs them one after the other, and on these shared machines its batch-64 figures spread too much to compare.
/// </summary>
static class InferenceTiming
{
    public static Command Command(string allocator)
    {
        var batches = new Option<int[]>("--batch-sizes") { Description = "batch sizes to time, e.g. 1,64", CustomParser = a => Cli.PositiveIntegers(a, "1,64") ?? [], DefaultValueFactory = _ => [1, 64] };
        var rounds = new Option<int>("--rounds") { Description = "timed rounds per batch size (one forward of each model per round)", DefaultValueFactory = _ => 21 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (the kernels of the compiled model use as many)", DefaultValueFactory = _ => MicroSuite.TorchThreads };
        var command = new Command("inference", "masked vs converted vs compiled CondenseNet-86 inference on 1x32x32, interleaved, medians") { batches, rounds, threads };
        command.SetAction(result => Run(result.GetValue(batches)!, result.GetValue(rounds), result.GetValue(threads), allocator));
        return command;
    }

    const int WarmupRounds = 3;

    static int Run(int[] batchSizes, int rounds, int threads, string allocator)
    {
        if (rounds < 1 || threads < 1) throw new ArgumentException("--rounds and --threads must be positive");
        if (batchSizes.Length == 0) throw new ArgumentException("--batch-sizes needs at least one batch size");
        TorchRuntime.SetThreads(threads);
        Console.WriteLine($"allocator: {allocator}; libtorch intra-op threads: {torch.get_num_threads()}");
        var (masked, converted) = InferenceBenchmark.FullyCondensedModels();
        using var _ = masked;
        using var __ = converted;
        using var compiled = CondensedInference.Compile(converted);
        var config = masked.Config;
        var rows = new List<(int Batch, double Masked, double Converted, double Compiled)>();
        foreach (int batch in batchSizes)
        {
            using var images = torch.randn(batch, config.InChannels, config.InputSize, config.InputSize);
            (string Name, Func<Tensor, Tensor> Forward)[] models = [("masked", masked.forward), ("converted", converted.forward), ("compiled", compiled.Forward)];
            var times = models.Select(_ => new List<double>()).ToArray();
            for (int round = -WarmupRounds; round < rounds; round++) // the compiled model measures its forms in its first round
            {
                for (int m = 0; m < models.Length; m++)
                {
                    double ms = Milliseconds(models[m].Forward, images);
                    if (round >= 0) times[m].Add(ms);
                }
                if (round >= 0 && (round + 1) % 5 == 0 || round == rounds - 1)
                    Console.WriteLine($"batch {batch}: round {round + 1}/{rounds}, medians so far " +
                        string.Join(", ", models.Select((model, m) => $"{model.Name} {Statistics.Median(times[m]):F1} ms")));
            }
            rows.Add((batch, Statistics.Median(times[0]), Statistics.Median(times[1]), Statistics.Median(times[2])));
        }

        Console.WriteLine();
        Console.WriteLine($"CondenseNet-86, 1x32x32, fully condensed, random weights; medians of {rounds} interleaved rounds");
        Console.WriteLine("| batch | masked | converted | compiled | converted / masked | compiled / masked |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Batch} | {r.Masked:F1} ms | {r.Converted:F1} ms | {r.Compiled:F1} ms | {r.Converted / r.Masked:F2} | {r.Compiled / r.Masked:F2} |");
        return 0;
    }

    static double Milliseconds(Func<Tensor, Tensor> forward, Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var clock = Stopwatch.StartNew();
        forward(images);
        return clock.Elapsed.TotalMilliseconds;
    }
}
