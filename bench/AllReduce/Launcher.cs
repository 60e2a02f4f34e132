using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Bench.AllReduce;

/// <summary>One measured configuration: a ring size, a buffer size and what the values cross the ring as.</summary>
sealed record Result(
    int Workers, double SizeMb, int Floats, string Precision, double[] TimesMs, double MedianMs, double MinMs,
    double AlgorithmGBps, double BusGBps, double RawStreamGBps, double[] RawStreamRankGBps)
{
    public long Bytes => (long)Floats * sizeof(float);
    public double BusToRaw => BusGBps / RawStreamGBps;
}

/// <summary>Starts one process per rank, forms the ring, and paces the probes and the all-reduces.</summary>
static class Launcher
{
    const int ProbeRounds = 3;

    public static async Task<List<Result>> RunAsync(BenchSettings settings)
    {
        var results = new List<Result>();
        long operation = 0;
        foreach (int workers in settings.Workers)
        {
            var ranks = Enumerable.Range(0, workers).Select(_ => Rank.Start(settings)).ToArray();
            try
            {
                string[] endpoints = await Task.WhenAll(ranks.Select(r => r.ExpectAsync("endpoint")));
                for (int rank = 0; rank < workers; rank++)
                    await ranks[rank].SendAsync($"ring {rank} {string.Join(' ', endpoints)}");

                // Every rank pushes at once, as in an all-reduce, where each stream shares the machine with the others.
                // The first round is not counted: it runs while the JIT is still compiling the stack.
                var probes = new List<double[]>();
                string probeBytes = ((long)(settings.ProbeMb * 1e6)).ToString(CultureInfo.InvariantCulture);
                for (int round = 0; round <= ProbeRounds; round++)
                {
                    double[] rates = await AllAsync(ranks, $"probe {probeBytes}", "probed");
                    if (round > 0) probes.Add(rates);
                }
                double[] rankRates = [.. Enumerable.Range(0, workers).Select(r => Statistics.Median(probes.Select(p => p[r])) / 1e9)];
                double rawGBps = Statistics.Median(probes.Select(p => p.Average())) / 1e9;

                foreach (double mb in settings.SizesMb)
                {
                    int floats = BenchSettings.Floats(mb);
                    await AllAsync(ranks, $"buffer {floats}", "ready");
                    foreach (string wire in settings.Precisions.Select(p => p.Name()))
                    {
                        var times = new List<double>();
                        for (int i = 0; i < settings.Warmups + settings.Repeats; i++)
                        {
                            // An all-reduce is over when its slowest rank is done.
                            double ms = (await AllAsync(ranks, $"go {++operation} {wire}", "done")).Max() * 1e3;
                            if (i >= settings.Warmups) times.Add(ms);
                        }
                        double median = Statistics.Median(times);
                        double bytes = floats * (double)sizeof(float);
                        double algorithm = bytes / (median / 1e3) / 1e9;
                        double bus = algorithm * 2 * (workers - 1) / workers;
                        var result = new Result(workers, mb, floats, wire, [.. times], median, times.Min(), algorithm, bus, rawGBps, rankRates);
                        Console.Error.WriteLine($"N={workers} {mb} MB {wire}: median {median:0.00} ms, bus {bus:0.000} GB/s, raw stream {rawGBps:0.000} GB/s");
                        results.Add(result);
                    }
                }
                foreach (var rank in ranks) await rank.SendAsync("quit");
                foreach (var rank in ranks) await rank.ExitAsync();
            }
            finally
            {
                foreach (var rank in ranks) rank.Dispose();
            }
        }
        return results;
    }

    /// <summary>Sends <paramref name="command"/> to every rank, then waits for each one's reply.</summary>
    static async Task<double[]> AllAsync(Rank[] ranks, string command, string reply)
    {
        foreach (var rank in ranks) await rank.SendAsync(command);
        string[] values = await Task.WhenAll(ranks.Select(r => r.ExpectAsync(reply)));
        return [.. values.Select(v => v.Length == 0 ? 0 : double.Parse(v, CultureInfo.InvariantCulture))];
    }

    /// <summary>A rank process: this same program with the hidden role argument.</summary>
    sealed class Rank : IDisposable
    {
        readonly Process process;

        Rank(Process process) => this.process = process;

        public static Rank Start(BenchSettings settings)
        {
            // Under "dotnet allreduce-bench.dll" the process is the host, which needs the assembly named again.
            string self = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
            var start = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
            start.ArgumentList.Add(RankProcess.Role);
            foreach (string arg in settings.ToArgs()) start.ArgumentList.Add(arg);
            return new Rank(Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}"));
        }

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
