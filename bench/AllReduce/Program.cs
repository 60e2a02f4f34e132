using System.Globalization;
using CondenseCluster.Bench.AllReduce;
using CondenseCluster.Shared.Comm;

// Ring all-reduce over the data plane's sockets (TCP and Unix) against PyTorch gloo's all_reduce and the raw speed of
// each transport, every rank in its own OS process, interleaved in one run (bench/README.md).
try
{
    if (args is [RankProcess.Role, .. var rest]) return await RankProcess.RunAsync(BenchSettings.Parse(rest));
    if (args is ["--help" or "-h"])
    {
        Console.WriteLine(BenchSettings.Usage);
        return 0;
    }
    var settings = BenchSettings.Parse(args);
    if (settings.Hosts is { } hosts && settings.Workers.Any(n => n % hosts != 0))
        throw new UsageException($"--hosts {hosts} must divide every ring size of --workers");
    var run = await Launcher.RunAsync(settings);
    Report.PrintTable(run, settings);
    if (settings.JsonPath is { } json) await Report.WriteJsonAsync(run, settings, json);
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

    /// <summary>
    /// What is all-reduced: our ring over TCP, over Unix sockets, over shared memory with the headers on Unix sockets
    /// (the same-host default), gloo's all_reduce; with --hosts, our ring over simulated hosts as one ring (flat) and in
    /// its hierarchical form (hier).
    /// </summary>
    enum Method { Tcp, Unix, Shm, Gloo, Flat, Hier }

    sealed record BenchSettings
    {
        public const string Usage = """
            allreduce-bench [--workers 2,3] [--sizes-mb 0.5,5.8,20] [--repeats 20] [--warmups 50] [--probe-mb 64]
                            [--segment-kb 256] [--precision fp32,fp16] [--methods tcp,unix,shm,gloo] [--python /usr/bin/python3]
                            [--hosts K] [--predict yes] [--json FILE]
              --workers     ring sizes to measure, one OS process per rank
              --sizes-mb    buffer sizes in MB (10^6 bytes); 5.8 is all 1,451,594 CondenseNet-86 gradients
              --repeats     timed all-reduces per size and method, after --warmups untimed ones, the methods in turn
              --probe-mb    bytes each rank pushes to its right neighbour to measure each transport's raw bandwidth
              --segment-kb  DataPlaneOptions.SegmentBytes in KiB (default: the data plane's own default)
              --precision   what our ring's values cross as, each measured in turn (default fp32; gloo sends fp32)
              --methods     tcp: our ring over TCP; unix: our ring over Unix sockets; shm: our ring as it runs
                            between ranks on one host (payloads through /dev/shm, headers on Unix sockets); gloo: PyTorch's gloo all_reduce (Debian's python3-torch, bench/pytorch/allreduce_rank.py);
                            flat, hier: see --hosts
              --python      the Python with torch for gloo (default /usr/bin/python3; gloo is left out without torch)
              --hosts       also flat and hier: the ranks split into K simulated hosts (127.0.0.51, .52, ...; N a
                            multiple of K), summed in one ring and hierarchically (within each host, then across)
              --predict yes also print what the alpha-beta fits of tcp and shm predict for 8-1,024 nodes at 25 and 100 Gbit/s
              --json        also write the results as JSON to FILE
            """;

        /// <summary>The gradients of CondenseNet-86, the buffer a training step all-reduces.</summary>
        public const int CondenseNet86Floats = 1_451_594;

        public int[] Workers { get; init; } = [2, 3];
        public double[] SizesMb { get; init; } = [0.5, 5.8, 20];
        public int Repeats { get; init; } = 20;
        /// <summary>
        /// Untimed all-reduces per size and method. .NET compiles a method optimized only after about 30 calls (tiered
        /// JIT, then a background compile): after 3 warm-ups the ranks still ran the ring's first-tier code, and 5.8 MB
        /// took 2–3x as long as after 50 (BENCHMARKS.md). A worker does thousands of all-reduces per job.
        /// </summary>
        public int Warmups { get; init; } = 50;
        public double ProbeMb { get; init; } = 64;
        public int? SegmentBytes { get; init; }
        public WirePrecision[] Precisions { get; init; } = [WirePrecision.Float32];
        public Method[] Methods { get; init; } = [Method.Tcp, Method.Unix, Method.Shm, Method.Gloo];
        public string Python { get; init; } = "/usr/bin/python3";
        public int? Hosts { get; init; }
        public bool Predict { get; init; }
        /// <summary>For a rank process: the address of its simulated host.</summary>
        public string? Listen { get; init; }

        /// <summary>The methods a rank process runs a node for, in the order of its endpoints.</summary>
        public Method[] RingMethods => [Method.Tcp, Method.Unix, Method.Shm, .. Hosts is null ? Array.Empty<Method>() : [Method.Flat, Method.Hier]];

        /// <summary>The simulated host of rank <paramref name="rank"/> of <paramref name="workers"/>.</summary>
        public string HostOf(int rank, int workers) => $"127.0.0.{51 + rank / (workers / Hosts!.Value)}";
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
                    "--segment-kb" => settings with { SegmentBytes = Number(value, n => n >= 1, "at least 1") * 1024 },
                    "--precision" => settings with { Precisions = List(value, (s, _) => Precision(s), _ => true, WirePrecisionNames.Choices) },
                    "--methods" => settings with { Methods = List(value, (s, _) => MethodNamed(s), _ => true, "tcp, unix, gloo, flat or hier") },
                    "--python" => settings with { Python = value },
                    "--predict" => settings with { Predict = value is "yes" or "true" },
                    "--hosts" => settings with { Hosts = Number(value, n => n >= 1, "at least 1") },
                    "--listen" => settings with { Listen = value },
                    "--json" => settings with { JsonPath = value },
                    _ => throw new UsageException($"unknown option {args[i]}"),
                };
            }
            if (settings.Hosts is not null && !settings.Methods.Contains(Method.Flat)) settings = settings with { Methods = [.. settings.Methods, Method.Flat, Method.Hier] };
            return settings;
        }

        /// <summary>The same settings as arguments, for rank <paramref name="rank"/> of <paramref name="workers"/>.</summary>
        public IEnumerable<string> ToArgs(int rank, int workers)
        {
            if (SegmentBytes is { } bytes)
            {
                yield return "--segment-kb";
                yield return (bytes / 1024).ToString(CultureInfo.InvariantCulture);
            }
            if (Hosts is { } hosts)
            {
                yield return "--hosts";
                yield return $"{hosts}";
                yield return "--listen";
                yield return HostOf(rank, workers);
            }
        }

        public static WirePrecision Precision(string text) =>
            WirePrecisionNames.Parse(text) ?? throw new UsageException($"'{text}': expected {WirePrecisionNames.Choices}");

        static Method MethodNamed(string text) =>
            Enum.TryParse<Method>(text, ignoreCase: true, out var method) ? method : throw new UsageException($"'{text}': expected tcp, unix, gloo, flat or hier");

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
