using System.Text.Json;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Bench.AllReduce;

static class Report
{
    public static void PrintTable(BenchRun run, BenchSettings settings)
    {
        Console.WriteLine($"all-reduce, one process per rank, methods in turn, {settings.Repeats} timed after {settings.Warmups} warm-ups; "
            + $"time = from the last rank's entry to the last rank's exit (slowest: the slowest rank's own time, its wait for late peers included); raw = {settings.ProbeMb} MB pushed by every rank to its right neighbour at once, median of 3 after a warm-up; "
            + "MB and GB/s count the float32 values reduced, whatever crosses the wire (fp16: half the bytes)");
        if (run.GlooNote is { } note) Console.WriteLine(note);
        foreach (var group in run.Probes.GroupBy(p => p.Workers))
            Console.WriteLine($"N={group.Key} raw bandwidth: " + string.Join(", ", group.Select(p => $"{p.Transport} {p.GBps:0.000} GB/s")));
        Console.WriteLine($"{"N",2} {"MB",6} {"method",-6} {"transport",-9} {"wire",5} {"median ms",10} {"min ms",8} {"slowest",8} {"bus GB/s",9} {"raw GB/s",9} {"bus/raw",8} {"/ gloo",7}");
        foreach (var r in run.Results)
        {
            var gloo = run.Results.SingleOrDefault(g => g.Method == Method.Gloo && g.Workers == r.Workers && g.Floats == r.Floats);
            string ratio = gloo is null ? "-" : $"{r.MedianMs / gloo.MedianMs:0.00}";
            Console.WriteLine($"{r.Workers,2} {r.Bytes / 1e6,6:0.0} {r.Method.ToString().ToLowerInvariant(),-6} {r.Transport,-9} {r.Precision,5} "
                + $"{r.MedianMs,10:0.00} {r.MinMs,8:0.00} {Statistics.Median(r.SlowestRankMs),8:0.00} {r.BusGBps,9:0.000} {r.RawGBps,9:0.000} {r.BusToRaw,8:0.00} {ratio,7}");
        }
        var fits = AlphaBeta.Fit(run.Results).ToList();
        foreach (var fit in fits)
            Console.WriteLine($"alpha-beta fit of {fit.Method}: α = {fit.AlphaUs:0.0} µs per hop, β = {fit.BetaGBps:0.000} GB/s ({fit.From})");
        if (settings.Predict && fits.Find(f => f.Method == "tcp") is { } tcp && (fits.Find(f => f.Method == "shm") ?? fits.Find(f => f.Method == "unix")) is { } sameHost)
            Prediction.Print(tcp, sameHost);
    }

    public static async Task WriteJsonAsync(BenchRun run, BenchSettings settings, string path)
    {
        var document = new
        {
            settings.Repeats, settings.Warmups, settings.ProbeMb, settings.SegmentBytes,
            Processors = Environment.ProcessorCount,
            run.GlooNote,
            Probes = run.Probes,
            Results = run.Results.Select(r => new
            {
                r.Workers, r.SizeMb, r.Floats, Method = r.Method.ToString().ToLowerInvariant(), r.Transport, r.Precision, r.Bytes,
                r.MedianMs, r.MinMs, r.AlgorithmGBps, r.BusGBps, r.RawGBps, r.BusToRaw, r.TimesMs, r.SlowestRankMs,
            }),
            Fits = AlphaBeta.Fit(run.Results),
        };
        await using var file = File.Create(path);
        await JsonSerializer.SerializeAsync(file, document, new JsonSerializerOptions { WriteIndented = true });
    }
}
