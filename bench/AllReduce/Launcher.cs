using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Bench.AllReduce;

/// <summary>
/// One measured configuration: a ring size, a buffer size, a method and what the values cross as. A time runs from
/// the moment the last rank entered the all-reduce to the moment the last one left it (every rank reads the machine's
/// monotonic clock), so that how late the launcher's word reached a rank does not count; <paramref name="SlowestRankMs"/>
/// is the slowest rank's own time from its entry, which does.
/// </summary>
sealed record Result(int Workers, double SizeMb, int Floats, Method Method, string Transport, string Precision, double[] TimesMs,
    double[] SlowestRankMs, double RawGBps)
{
    public double MedianMs => Statistics.Median(TimesMs);
    public double MinMs => TimesMs.Min();
    public long Bytes => (long)Floats * sizeof(float);
    public double AlgorithmGBps => Bytes / (MedianMs / 1e3) / 1e9;
    public double BusGBps => AlgorithmGBps * 2 * (Workers - 1) / Workers;
    public double BusToRaw => BusGBps / RawGBps;
}

/// <summary>Raw bandwidth of one transport at one ring size: every rank pushing to its right neighbour at once.</summary>
sealed record Probe(int Workers, string Transport, double GBps, double[] RankGBps);

sealed record BenchRun(List<Result> Results, List<Probe> Probes, string? GlooNote);

/// <summary>Starts one process per rank for our ring and for gloo, measures the raw transports, and paces the all-reduces.</summary>
static class Launcher
{
    const int ProbeRounds = 3;

    public static async Task<BenchRun> RunAsync(BenchSettings settings)
    {
        var results = new List<Result>();
        var probes = new List<Probe>();
        string? glooNote = settings.Methods.Contains(Method.Gloo) ? GlooMissing(settings.Python) : null;
        var methods = settings.Methods.Where(m => m != Method.Gloo || glooNote is null).ToArray();
        long operation = 0;
        foreach (int workers in settings.Workers)
        {
            var ours = Enumerable.Range(0, workers).Select(rank => Rank.Ours(settings, rank, workers)).ToList();
            var gloo = new List<Rank>();
            try
            {
                string[][] endpoints = [.. (await Task.WhenAll(ours.Select(r => r.ExpectAsync("endpoints")))).Select(e => e.Split(' '))];
                var lists = Enumerable.Range(0, settings.RingMethods.Length).Select(m => string.Join(' ', endpoints.Select(e => e[m])));
                string ring = string.Join(' ', lists);
                for (int rank = 0; rank < workers; rank++) await ours[rank].SendAsync($"ring {rank} {ring}");
                if (methods.Contains(Method.Gloo))
                {
                    int port = FreePort();
                    gloo.AddRange(Enumerable.Range(0, workers).Select(rank => Rank.Gloo(settings.Python, rank, workers, port)));
                    await Task.WhenAll(gloo.Select(r => r.ExpectAsync("ready")));
                }

                // The transports in turn, every rank pushing at once as in an all-reduce; the first round is not
                // counted: it runs while the JIT is still compiling the stack.
                string probeBytes = ((long)(settings.ProbeMb * 1e6)).ToString(CultureInfo.InvariantCulture);
                var rates = new Dictionary<string, List<double[]>> { ["tcp"] = [], ["unix"] = [], ["grpc"] = [] };
                for (int round = 0; round <= ProbeRounds; round++)
                    foreach (var (transport, measured) in rates)
                    {
                        double[] rate = await AllAsync(ours, $"probe {transport} {probeBytes}", "probed");
                        if (round > 0) measured.Add(rate);
                    }
                foreach (var (transport, measured) in rates)
                {
                    var probe = new Probe(workers, transport, Statistics.Median(measured.Select(p => p.Average())) / 1e9,
                        [.. Enumerable.Range(0, workers).Select(r => Statistics.Median(measured.Select(p => p[r])) / 1e9)]);
                    Console.Error.WriteLine($"N={workers} raw {transport}: {probe.GBps:0.000} GB/s");
                    probes.Add(probe);
                }

                foreach (double mb in settings.SizesMb)
                {
                    int floats = BenchSettings.Floats(mb);
                    await AllAsync([.. ours, .. gloo], $"buffer {floats}", "ready");
                    var runs = methods.SelectMany(m => m == Method.Gloo ? [(m, "fp32")] : settings.Precisions.Select(p => (m, p.Name()))).ToArray();
                    var times = runs.ToDictionary(r => r, _ => new List<double>());
                    var slowest = runs.ToDictionary(r => r, _ => new List<double>());
                    var transports = runs.ToDictionary(r => r, r => r.m == Method.Gloo ? "gloo tcp" : "");
                    for (int i = 0; i < settings.Warmups + settings.Repeats; i++)
                        foreach (var run in runs)
                        {
                            var (ms, slowestMs, transport) = run.m == Method.Gloo
                                ? await TimedAsync(gloo, "go")
                                : await TimedAsync(ours, $"go {++operation} {run.m.ToString().ToLowerInvariant()} {run.Item2}");
                            transports[run] = transport ?? "gloo tcp";
                            if (i < settings.Warmups) continue;
                            times[run].Add(ms);
                            slowest[run].Add(slowestMs);
                        }
                    foreach (var run in runs)
                    {
                        string rawOf = run.m is Method.Unix or Method.Shm ? "unix" : "tcp"; // the raw socket between the same two ranks
                        var result = new Result(workers, mb, floats, run.m, transports[run], run.Item2, [.. times[run]], [.. slowest[run]],
                            probes.Single(p => p.Workers == workers && p.Transport == rawOf).GBps);
                        Console.Error.WriteLine($"N={workers} {mb} MB {run.m} ({result.Transport}) {run.Item2}: median {result.MedianMs:0.00} ms, bus {result.BusGBps:0.000} GB/s");
                        results.Add(result);
                    }
                }
                foreach (var rank in ours.Concat(gloo)) await rank.SendAsync("quit");
                foreach (var rank in ours.Concat(gloo)) await rank.ExitAsync();
            }
            finally
            {
                foreach (var rank in ours.Concat(gloo)) rank.Dispose();
            }
        }
        return new BenchRun(results, probes, glooNote);
    }

    /// <summary>Why gloo cannot be measured, or null when the Python has torch.</summary>
    static string? GlooMissing(string python)
    {
        try
        {
            using var check = Process.Start(new ProcessStartInfo(python, ["-c", "import torch.distributed"]) { RedirectStandardError = true })!;
            check.WaitForExit();
            return check.ExitCode == 0 ? null : $"gloo not measured: {python} has no torch (apt-get install python3-torch)";
        }
        catch (System.ComponentModel.Win32Exception) { return $"gloo not measured: no {python}"; }
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Sends <paramref name="command"/> to every rank, then waits for each one's reply.</summary>
    static async Task<double[]> AllAsync(IReadOnlyList<Rank> ranks, string command, string reply) =>
        [.. (await RepliesAsync(ranks, command, reply)).Select(v => v.Length == 0 ? 0 : double.Parse(v.Split(' ')[0], CultureInfo.InvariantCulture))];

    /// <summary>
    /// One timed all-reduce: milliseconds from the last rank's entry to the last one's exit, the slowest rank's own
    /// milliseconds, and the transport rank 0's ring took (none for gloo). Replies are "START END [TRANSPORT]" in
    /// nanoseconds of the shared monotonic clock.
    /// </summary>
    static async Task<(double Ms, double SlowestRankMs, string? Transport)> TimedAsync(IReadOnlyList<Rank> ranks, string command)
    {
        var replies = (await RepliesAsync(ranks, command, "done")).Select(r => r.Split(' ')).ToArray();
        var spans = replies.Select(r => (Start: long.Parse(r[0], CultureInfo.InvariantCulture), End: long.Parse(r[1], CultureInfo.InvariantCulture))).ToArray();
        return ((spans.Max(s => s.End) - spans.Max(s => s.Start)) / 1e6, spans.Max(s => s.End - s.Start) / 1e6, replies[0].ElementAtOrDefault(2));
    }

    static async Task<string[]> RepliesAsync(IReadOnlyList<Rank> ranks, string command, string reply)
    {
        foreach (var rank in ranks) await rank.SendAsync(command);
        return await Task.WhenAll(ranks.Select(r => r.ExpectAsync(reply)));
    }

    /// <summary>A rank process: this same program with the hidden role argument, or a gloo rank in Python.</summary>
    sealed class Rank : IDisposable
    {
        readonly Process process;

        Rank(Process process) => this.process = process;

        public static Rank Ours(BenchSettings settings, int rank, int workers)
        {
            // Under "dotnet allreduce-bench.dll" the process is the host, which needs the assembly named again.
            string self = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
            var start = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
            start.ArgumentList.Add(RankProcess.Role);
            foreach (string arg in settings.ToArgs(rank, workers)) start.ArgumentList.Add(arg);
            return Start(start);
        }

        public static Rank Gloo(string python, int rank, int workers, int port)
        {
            string script = Path.Combine(AppContext.BaseDirectory, "allreduce_rank.py");
            var start = new ProcessStartInfo(python, [script, $"{rank}", $"{workers}", $"{port}"])
            { RedirectStandardInput = true, RedirectStandardOutput = true };
            return Start(start);
        }

        static Rank Start(ProcessStartInfo start) =>
            new(Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}"));

        public async Task SendAsync(string line)
        {
            await process.StandardInput.WriteLineAsync(line);
            await process.StandardInput.FlushAsync();
        }

        /// <summary>The rest of the next line, which must start with <paramref name="word"/>.</summary>
        public async Task<string> ExpectAsync(string word)
        {
            string line = await process.StandardOutput.ReadLineAsync()
                ?? throw new InvalidOperationException($"rank process {process.Id} ended while the launcher waited for '{word}' (its error is above)");
            return line == word ? ""
                : line.StartsWith(word + " ", StringComparison.Ordinal) ? line[(word.Length + 1)..]
                : throw new InvalidOperationException($"rank process {process.Id} said '{line}' where the launcher waited for '{word}'");
        }

        public async Task ExitAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await process.WaitForExitAsync(timeout.Token);
            if (process.ExitCode != 0) throw new InvalidOperationException($"rank process {process.Id} exited with {process.ExitCode}");
        }

        public void Dispose()
        {
            if (!process.HasExited) process.Kill();
            process.Dispose();
        }
    }
}
