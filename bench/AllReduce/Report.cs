using System.Text.Json;

namespace CondenseCluster.Bench.AllReduce;

static class Report
{
    public static void PrintTable(IReadOnlyList<Result> results, BenchSettings settings)
    {
        Console.WriteLine($"ring all-reduce, one process per rank, {settings.Repeats} timed after {settings.Warmups} warm-ups; "
            + $"time = slowest rank; raw stream = {settings.ProbeMb} MB pushed by every rank at once, median of 3 after a warm-up; "
            + "MB and GB/s count the float32 values reduced, whatever crosses the wire (fp16: half the bytes)");
        Console.WriteLine($"{"N",2} {"MB",6} {"floats",10} {"wire",5} {"median ms",10} {"min ms",8} {"alg GB/s",9} {"bus GB/s",9} {"raw GB/s",9} {"bus/raw",8}");
        foreach (var r in results)
            Console.WriteLine($"{r.Workers,2} {r.Bytes / 1e6,6:0.0} {r.Floats,10:N0} {r.Precision,5} {r.MedianMs,10:0.00} {r.MinMs,8:0.00} "
                + $"{r.AlgorithmGBps,9:0.000} {r.BusGBps,9:0.000} {r.RawStreamGBps,9:0.000} {r.BusToRaw,8:0.00}");
    }

    public static async Task WriteJsonAsync(IReadOnlyList<Result> results, BenchSettings settings, string path)
    {
        var document = new
        {
            settings.Repeats, settings.Warmups, settings.ProbeMb, settings.MessageBytes,
            Processors = Environment.ProcessorCount,
            Results = results.Select(r => new
            {
                r.Workers, r.SizeMb, r.Floats, r.Precision, r.Bytes, r.MedianMs, r.MinMs, r.AlgorithmGBps, r.BusGBps,
                r.RawStreamGBps, r.BusToRaw, r.RawStreamRankGBps, r.TimesMs,
            }),
        };
        await using var file = File.Create(path);
        await JsonSerializer.SerializeAsync(file, document, new JsonSerializerOptions { WriteIndented = true });
    }
}
