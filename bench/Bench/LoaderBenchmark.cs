using System.CommandLine;
using System.Diagnostics;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Bench;

/// <summary>
/// <c>loader</c>: throughput of the ImageNet input pipeline (ImageFolderDataset decoding JPEGs with a 224x224
/// RandomResizedCrop and flip, through the BatchPrefetcher the training loop uses) for each number of loader threads.
/// Every repetition reads the same images, after an untimed pass that fills the file cache: it measures decoding and
/// augmentation, not the disk.
/// </summary>
static class LoaderBenchmark
{
    const int Classes = 4, Width = 500, Height = 375, Seed = 0;

    public static Command Command()
    {
        var images = new Option<int>("--images") { Description = "images per repetition (synthetic ones generated, or the first of --folder's)", DefaultValueFactory = _ => 200 };
        var folder = new Option<string?>("--folder") { Description = "read this folder's class subfolders of images (e.g. an ImageNet train folder) instead of generated 500x375 JPEGs" };
        var threads = new Option<int[]>("--threads") { Description = "loader thread counts to measure, e.g. 1,2", CustomParser = a => Cli.PositiveIntegers(a, "1,2") ?? [], DefaultValueFactory = _ => [1, 2] };
        var repeats = new Option<int>("--repeats") { Description = "timed repetitions per thread count", DefaultValueFactory = _ => 5 };
        var batch = new Option<int>("--batch-size") { Description = "images per batch", DefaultValueFactory = _ => 32 };
        var command = new Command("loader", "images/s of the ImageNet data pipeline (decode, random-resized crop 224, flip) per loader thread count")
        {
            images, folder, threads, repeats, batch,
        };
        command.SetAction(result => Run(result.GetValue(images), result.GetValue(folder), result.GetValue(threads)!,
            result.GetValue(repeats), result.GetValue(batch)));
        return command;
    }

    /// <summary>The images/s of each timed repetition with <see cref="Threads"/> loader threads.</summary>
    internal sealed record Measurement(int Threads, double[] ImagesPerSecond)
    {
        public double Median => Statistics.Median(ImagesPerSecond);
    }

    static int Run(int images, string? folder, int[] threadCounts, int repeats, int batchSize)
    {
        var (read, measurements) = Measure(images, folder, threadCounts, repeats, batchSize);
        PrintSummary(measurements, read, repeats);
        return 0;
    }

    /// <summary>
    /// Reads <paramref name="images"/> (generated, or of <paramref name="folder"/>: at most all of them, the count
    /// returned) per repetition with each thread count, printing each repetition.
    /// </summary>
    internal static (int Images, IReadOnlyList<Measurement> Measurements) Measure(int images, string? folder, int[] threadCounts, int repeats, int batchSize)
    {
        if (images < 1 || repeats < 1 || batchSize < 1) throw new ArgumentException("--images, --repeats and --batch-size must be positive");
        if (threadCounts.Length == 0) throw new ArgumentException("--threads needs at least one thread count");
        using var synthetic = folder is null ? Generate(images) : null;
        string root = synthetic?.Root ?? folder!;
        string[] classes = synthetic?.ClassNames
            ?? [.. Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)];
        var dataset = new ImageFolderDataset("loader-bench", root, classes);
        // A fixed sample of the folder, so that every repetition reads the same (cached) files.
        int[] indices = [.. SampleOrder.Permutation(dataset.Count, Seed, epoch: 0).Take(images)];
        Console.WriteLine($"{dataset.Description}; reading {indices.Length} per repetition in batches of {batchSize}, "
            + $"{dataset.Size}x{dataset.Size} random-resized crops + flips, {Environment.ProcessorCount} cores");

        int warmupThreads = threadCounts.Max();
        double warmupRate = ImagesPerSecond(dataset, indices, warmupThreads, batchSize, epoch: 0);
        Console.WriteLine($"warm-up pass with {warmupThreads} loader thread{(warmupThreads == 1 ? "" : "s")}: {warmupRate:F1} images/s (not counted)");
        var measurements = new List<Measurement>();
        foreach (int threads in threadCounts)
        {
            var rates = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                rates[r] = ImagesPerSecond(dataset, indices, threads, batchSize, epoch: r + 1);
                Console.WriteLine($"threads {threads}, repetition {r + 1}/{repeats}: {rates[r]:F1} images/s ({rates[r] / threads:F1} per thread)");
            }
            measurements.Add(new Measurement(threads, rates));
        }
        return (indices.Length, measurements);
    }

    static SyntheticImageFolder Generate(int images)
    {
        var clock = Stopwatch.StartNew();
        var folder = SyntheticImageFolder.Create(images, Classes, Width, Height, Seed);
        Console.WriteLine($"generated {images} JPEGs of {Width}x{Height} in {Classes} classes ({folder.TotalBytes / images / 1024.0:F0} KiB each on average) "
            + $"under {folder.Root} in {clock.Elapsed.TotalSeconds:F1} s; deleted at the end");
        return folder;
    }

    /// <summary>One pass over <paramref name="indices"/>, augmented as in training epoch <paramref name="epoch"/>.</summary>
    static double ImagesPerSecond(IImageDataset dataset, int[] indices, int threads, int batchSize, int epoch)
    {
        var requests = indices.Chunk(batchSize).Select(chunk => new BatchRequest(chunk, epoch, Augment: true));
        var clock = Stopwatch.StartNew();
        int read = 0;
        // Two batches ahead, as the training loop with one micro-batch per step.
        using (var prefetcher = new BatchPrefetcher(dataset, requests, Seed, threads, capacity: 2))
            while (prefetcher.TryTake(out var batch)) read += batch.Count;
        return read / clock.Elapsed.TotalSeconds;
    }

    static void PrintSummary(IReadOnlyList<Measurement> measurements, int images, int repeats)
    {
        Console.WriteLine();
        Console.WriteLine($"summary: {images} images per repetition, median of {repeats}; per thread = per core while threads <= {Environment.ProcessorCount} cores");
        Console.WriteLine($"{"threads",7} {"images/s",9} {"images/s/thread",15} {"min",7} {"max",7} {"ms/image/thread",15}");
        foreach (var m in measurements)
        {
            double median = m.Median;
            Console.WriteLine($"{m.Threads,7} {median,9:F1} {median / m.Threads,15:F1} {m.ImagesPerSecond.Min(),7:F1} {m.ImagesPerSecond.Max(),7:F1} "
                + $"{1000 * m.Threads / median,15:F2}");
        }
    }
}
