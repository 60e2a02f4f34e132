using System.CommandLine;
using System.Diagnostics;
using CondenseCluster.Bench.MicroBenchmarks;
using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench;

/// <summary>
/// <c>inference</c>: the masked model (training form, eval), the converted model as the official code runs it, the
/// compiled converted model (<see cref="CondensedInference"/>) and the converted model exported to ONNX
/// (<see cref="OnnxExport"/>) in ONNX Runtime, once with no graph optimisation (the graph as exported) and once with
/// all of them (ONNX Runtime's default), timed in turn: each round runs one forward of each, so that the machine's
/// changing load falls on all alike. BenchmarkDotNet's <c>InferenceBenchmark</c> runs them one after the other, and on
/// these shared machines its batch-64 figures spread too much to compare.
/// </summary>
static class InferenceTiming
{
    public static Command Command(string allocator)
    {
        var batches = new Option<int[]>("--batch-sizes") { Description = "batch sizes to time, e.g. 1,64", CustomParser = a => Cli.PositiveIntegers(a, "1,64") ?? [], DefaultValueFactory = _ => [1, 64] };
        var rounds = new Option<int>("--rounds") { Description = "timed rounds per batch size (one forward of each model per round)", DefaultValueFactory = _ => 21 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (the kernels of the compiled model use as many)", DefaultValueFactory = _ => MicroSuite.TorchThreads };
        var command = new Command("inference", "masked vs converted vs compiled CondenseNet-86 vs ONNX Runtime inference on 1x32x32, interleaved, medians") { batches, rounds, threads };
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
        var scratch = Directory.CreateTempSubdirectory("condense-bench");
        string onnxFile = Path.Combine(scratch.FullName, "condensenet-86.onnx");
        OnnxExport.Save(converted, onnxFile, new OnnxExportOptions());
        using var onnxPlain = new OnnxRuntimeModel(onnxFile, GraphOptimizationLevel.ORT_DISABLE_ALL, threads);
        using var onnxOptimized = new OnnxRuntimeModel(onnxFile, GraphOptimizationLevel.ORT_ENABLE_ALL, threads);
        scratch.Delete(recursive: true); // the sessions have read the graph
        Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()}, {threads} intra-op threads, opset {OnnxExport.DefaultOpset}");
        var config = masked.Config;
        var rows = new List<(int Batch, double[] Medians)>();
        foreach (int batch in batchSizes)
        {
            using var images = torch.randn(batch, config.InChannels, config.InputSize, config.InputSize);
            var pixels = images.data<float>().ToArray();
            (string Name, Action Forward)[] models = [("masked", () => masked.forward(images)), ("converted", () => converted.forward(images)),
                ("compiled", () => compiled.Forward(images)), ("ORT plain", () => onnxPlain.Run(pixels, images.shape)),
                ("ORT optimised", () => onnxOptimized.Run(pixels, images.shape))];
            var times = models.Select(_ => new List<double>()).ToArray();
            for (int round = -WarmupRounds; round < rounds; round++) // the compiled model measures its forms in its first round
            {
                for (int m = 0; m < models.Length; m++)
                {
                    double ms = Milliseconds(models[m].Forward);
                    if (round >= 0) times[m].Add(ms);
                }
                if (round >= 0 && (round + 1) % 5 == 0 || round == rounds - 1)
                    Console.WriteLine($"batch {batch}: round {round + 1}/{rounds}, medians so far " +
                        string.Join(", ", models.Select((model, m) => $"{model.Name} {Statistics.Median(times[m]):F1} ms")));
            }
            rows.Add((batch, times.Select(Statistics.Median).ToArray()));
        }

        Console.WriteLine();
        Console.WriteLine($"CondenseNet-86, 1x32x32, fully condensed, random weights; medians of {rounds} interleaved rounds");
        Console.WriteLine("| batch | masked | converted | compiled | ONNX Runtime, no graph optimisation | ONNX Runtime, all optimisations (default) | compiled / masked | compiled / ORT optimised |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (batch, m) in rows)
            Console.WriteLine($"| {batch} | {m[0]:F1} ms | {m[1]:F1} ms | {m[2]:F1} ms | {m[3]:F1} ms | {m[4]:F1} ms | {m[2] / m[0]:F2} | {m[2] / m[4]:F2} |");
        return 0;
    }

    static double Milliseconds(Action forward)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var clock = Stopwatch.StartNew();
        forward();
        return clock.Elapsed.TotalMilliseconds;
    }
}
