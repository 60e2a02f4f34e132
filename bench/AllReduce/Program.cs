using System.Globalization;
using CondenseCluster.Bench.AllReduce;
using CondenseCluster.Shared.Comm;

// Ring all-reduce over the data plane against the raw speed of one of its streams, every rank in its own OS process
// like the PyTorch DDP/gloo baseline (bench/README.md).
try
{
    if (args is [RankProcess.Role, .. var rest]) return await RankProcess.RunAsync(BenchSettings.Parse(rest));
    if (args is ["--help" or "-h"])
    {
        Console.WriteLine(BenchSettings.Usage);
        return 0;
    }
    var settings = BenchSettings.Parse(args);
    var results = await Launcher.RunAsync(settings);
    Report.PrintTable(results, settings);
    if (settings.JsonPath is { } json) await Report.WriteJsonAsync(results, settings, json);
    return 0;
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(BenchSettings.Usage);
    return 2;
}

namespace CondenseCluster.Bench.AllReduce
{
    sealed class UsageException(string message) : Exception(message);

    sealed record BenchSettings
    {
        public const string Usage = """
            allreduce-bench [--workers 2,3] [--sizes-mb 2,5.8,20] [--repeats 20] [--warmups 3] [--probe-mb 64]
                            [--message-kb 1024] [--precision fp32,fp16] [--json FILE]
              --workers     ring sizes to measure, one OS process per rank
              --sizes-mb    buffer sizes in MB (10^6 bytes); 5.8 is all 1,451,594 CondenseNet-86 gradients
              --repeats     timed all-reduces per size, after --warmups untimed ones
              --probe-mb    bytes each rank pushes to its right neighbour to measure the raw stream bandwidth
              --message-kb  DataPlaneOptions.MessageBytes in KiB (default: the data plane's own default)
              --precision   what the values cross the ring as, each measured after the other per size (default fp32)
              --json        also write the results as JSON to FILE
            """;

        /// <summary>The gradients of CondenseNet-86, the buffer a training step all-reduces.</summary>
        public const int CondenseNet86Floats = 1_451_594;

        public int[] Workers { get; init; } = [2, 3];
        public double[] SizesMb { get; init; } = [2, 5.8, 20];
        public int Repeats { get; init; } = 20;
        public int Warmups { get; init; } = 3;
        public double ProbeMb { get; init; } = 64;
        public int? MessageBytes { get; init; }
        public WirePrecision[] Precisions { get; init; } = [WirePrecision.Float32];
        public string? JsonPath { get; init; }

        /// <summary>Floats in a buffer of <paramref name="mb"/> MB; 5.8 means exactly the CondenseNet-86 gradients.</summary>
        public static int Floats(double mb) => mb == 5.8 ? CondenseNet86Floats : (int)Math.Round(mb * 1e6 / sizeof(float));

        public static BenchSettings Parse(IReadOnlyList<string> args)
        {
            var settings = new BenchSettings();
            for (int i = 0; i < args.Count; i += 2)
            {
                if (i + 1 >= args.Count) throw new UsageException($"{args[i]} needs a value");
                string value = args[i + 1];
                settings = args[i] switch
                {
                    "--workers" => settings with { Workers = List(value, int.Parse, n => n >= 2, "ring sizes of at least 2") },
                    "--sizes-mb" => settings with { SizesMb = List(value, double.Parse, mb => mb > 0, "positive sizes") },
                    "--repeats" => settings with { Repeats = Number(value, n => n >= 1, "at least 1") },
                    "--warmups" => settings with { Warmups = Number(value, n => n >= 0, "at least 0") },
                    "--probe-mb" => settings with { ProbeMb = List(value, double.Parse, mb => mb > 0, "a positive size").Single() },
                    "--message-kb" => settings with { MessageBytes = Number(value, n => n >= 1, "at least 1") * 1024 },
                    "--precision" => settings with { Precisions = List(value, (s, _) => Precision(s), _ => true, WirePrecisionNames.Choices) },
                    "--json" => settings with { JsonPath = value },
                    _ => throw new UsageException($"unknown option {args[i]}"),
                };
            }
            return settings;
        }

        /// <summary>The same settings as arguments, for a rank process.</summary>
        public IEnumerable<string> ToArgs()
        {
            if (MessageBytes is { } bytes) return ["--message-kb", (bytes / 1024).ToString(CultureInfo.InvariantCulture)];
            return [];
        }

        public static WirePrecision Precision(string text) =>
            WirePrecisionNames.Parse(text) ?? throw new UsageException($"'{text}': expected {WirePrecisionNames.Choices}");

        static int Number(string text, Func<int, bool> valid, string what) => List(text, int.Parse, valid, what).Single();

        static T[] List<T>(string text, Func<string, IFormatProvider, T> parse, Func<T, bool> valid, string what)
        {
            try
            {
                var values = text.Split(',', StringSplitOptions.TrimEntries).Select(s => parse(s, CultureInfo.InvariantCulture)).ToArray();
                return values.Length > 0 && values.All(valid) ? values : throw new UsageException($"'{text}': expected {what}");
            }
            catch (FormatException) { throw new UsageException($"'{text}' is not a number list"); }
        }
    }
}
