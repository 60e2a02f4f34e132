using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench;

/// <summary>
/// <c>memory</c>: a worker's resident memory over a long run. Trains in this process with the engine every worker runs,
/// on one repeated synthetic batch, condensing on the schedule of a run of that many steps, and samples VmRSS and VmHWM.
/// Fails (exit code 1) when resident memory grows by more than the limit after warm-up: a leak check.
/// </summary>
static class MemoryBenchmark
{
    const string Dataset = "fashion-mnist";
    const double LearningRate = 0.02;

    /// <summary>CondenseNet-86's growth rates with 4 layers per block instead of 14: 1,000 steps in a few minutes on 2 cores.</summary>
    static readonly CondenseNetConfig Tiny = new CondenseNetConfig { Stages = [4, 4, 4], Growth = [8, 16, 32] }.ForDataset(Dataset);

    public static Command Command(string allocator)
    {
        var steps = new Option<int>("--steps") { Description = "training steps", DefaultValueFactory = _ => 1000 };
        var arch = new Option<string>("--arch") { Description = $"tiny (4-4-4 layers) or a preset: {string.Join(", ", CondenseNetConfig.PresetNames)}", DefaultValueFactory = _ => "tiny" };
        var batch = new Option<int>("--batch-size") { Description = "images per step (1x32x32, Fashion-MNIST's shape)", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads", DefaultValueFactory = _ => 2 };
        var warmup = new Option<int>("--warmup-steps") { Description = "steps before the reference sample that growth is measured from", DefaultValueFactory = _ => 100 };
        var sampleEvery = new Option<int>("--sample-every") { Description = "sample memory (and print a progress line) every N steps", DefaultValueFactory = _ => 50 };
        var maxGrowth = new Option<double>("--max-growth-mib") { Description = "fail when resident memory grows by more than this after warm-up", DefaultValueFactory = _ => 64 };
        var command = new Command("memory", "resident memory of a worker's training loop over many steps; fails on growth after warm-up (leak check)")
        {
            steps, arch, batch, threads, warmup, sampleEvery, maxGrowth,
        };
        command.SetAction(result =>
        {
            var settings = new Settings(result.GetValue(arch)!, result.GetValue(steps), result.GetValue(batch), result.GetValue(warmup),
                result.GetValue(sampleEvery), result.GetValue(maxGrowth));
            settings.Validate();
            TorchRuntime.SetThreads(result.GetValue(threads));
            return Run(settings, allocator);
        });
        return command;
    }

    sealed record Settings(string Arch, int Steps, int BatchSize, int WarmupSteps, int SampleEvery, double MaxGrowthMib)
    {
        public CondenseNetConfig Model => Arch == "tiny" ? Tiny : CondenseNetConfig.Preset(Arch, Dataset);

        public void Validate()
        {
            if (Steps < 1 || BatchSize < 1 || SampleEvery < 1) throw new ArgumentException("--steps, --batch-size and --sample-every must be positive");
            if (WarmupSteps < 0 || WarmupSteps >= Steps) throw new ArgumentException($"--warmup-steps {WarmupSteps} must be in [0, --steps {Steps})");
            if (MaxGrowthMib < 0) throw new ArgumentException($"--max-growth-mib {MaxGrowthMib} must not be negative");
        }

        /// <summary>Steps after which memory is sampled: every <see cref="SampleEvery"/>, the end of warm-up and the last.</summary>
        public bool Samples(int completedSteps) =>
            completedSteps % SampleEvery == 0 || completedSteps == WarmupSteps || completedSteps == Steps;
    }

    static int Run(Settings settings, string allocator)
    {
        var config = settings.Model;
        var options = new TrainingOptions { Arch = settings.Arch, Model = config, Dataset = Dataset, BatchSize = settings.BatchSize };
        using var engine = new TrainingEngine(options, torch.CPU);
        using var images = torch.randn(settings.BatchSize, config.InChannels, config.InputSize, config.InputSize);
        using var labels = torch.randint(0, config.NumClasses, [settings.BatchSize], dtype: ScalarType.Int64);
        Console.WriteLine($"memory: {settings.Arch} ({config}), batch {settings.BatchSize}, {settings.Steps} steps, "
            + $"libtorch threads {torch.get_num_threads()}, allocator: {allocator}");

        var (startResident, _) = ProcessMemory.Read();
        var samples = new List<MemorySample>();
        var stepTimes = new List<double>();
        var sinceLastLine = new List<double>();
        var run = Stopwatch.StartNew();
        for (int step = 0; step < settings.Steps; step++)
        {
            var clock = Stopwatch.StartNew();
            // Condensing on the schedule, as a real run does: the masks change at progress 1/6, 1/3 and 1/2.
            engine.Condense(CondensingSchedule.Progress(step, settings.Steps));
            engine.BeginStep();
            engine.Accumulate(images, labels, step, microBatch: 0);
            engine.ApplyUpdate(LearningRate);
            stepTimes.Add(clock.Elapsed.TotalMilliseconds);
            sinceLastLine.Add(stepTimes[^1]);

            int completed = step + 1;
            if (!settings.Samples(completed)) continue;
            var (resident, peak) = ProcessMemory.Read();
            samples.Add(new MemorySample(completed, resident, peak, GC.GetGCMemoryInfo().TotalCommittedBytes));
            PrintProgress(samples[^1], settings.Steps, sinceLastLine);
            sinceLastLine.Clear();
        }
        return PrintSummary(MemorySummary.Of(samples, settings.WarmupSteps), settings, startResident,
            Statistics.Median(stepTimes.Skip(settings.WarmupSteps)), run.Elapsed);
    }

    static void PrintProgress(MemorySample sample, int steps, List<double> stepTimesSinceLastLine)
    {
        string counter = sample.Step.ToString(CultureInfo.InvariantCulture).PadLeft(steps.ToString(CultureInfo.InvariantCulture).Length);
        // The slowest step too: on a shared machine one busy core can stall libtorch's threads for seconds, which a median hides.
        Console.WriteLine($"step {counter}/{steps}: {Statistics.Median(stepTimesSinceLastLine),5:F0} ms/step median, "
            + $"{stepTimesSinceLastLine.Max(),6:F0} max since the last line; RSS {Mib(sample.ResidentBytes)} (GC {Mib(sample.ManagedCommittedBytes)}), peak {Mib(sample.PeakResidentBytes)}");
    }

    static int PrintSummary(MemorySummary summary, Settings settings, long startResident, double medianStepMs, TimeSpan elapsed)
    {
        bool leaked = summary.GrowthBytes > settings.MaxGrowthMib * (1 << 20);
        (string Label, string Value)[] rows =
        [
            ("RSS before the first step", Mib(startResident)),
            ($"RSS after warm-up (step {summary.AfterWarmup.Step})", Mib(summary.AfterWarmup.ResidentBytes)),
            ("peak (VmHWM)", Mib(summary.PeakBytes)),
            ($"RSS at end (step {summary.End.Step})", Mib(summary.End.ResidentBytes)),
            ("growth after warm-up", $"{Mib(summary.GrowthBytes, signed: true)} ({Mib((long)summary.GrowthPer1000StepsBytes, signed: true)} per 1000 steps), "
                + $"of which GC-committed {Mib(summary.ManagedGrowthBytes, signed: true)}"),
        ];
        int width = rows.Max(row => row.Label.Length);
        Console.WriteLine();
        Console.WriteLine($"summary: {settings.Steps} steps in {elapsed.TotalSeconds:F0} s, median {medianStepMs:F0} ms per step after warm-up");
        foreach (var (label, value) in rows) Console.WriteLine($"  {label.PadRight(width)}  {value}");
        Console.WriteLine(leaked
            ? $"FAILED: resident memory grew by more than {settings.MaxGrowthMib} MiB after warm-up (--max-growth-mib)"
            : $"ok: growth after warm-up within {settings.MaxGrowthMib} MiB (--max-growth-mib)");
        return leaked ? 1 : 0;
    }

    static string Mib(long bytes, bool signed = false) => (bytes / 1048576.0).ToString(signed ? "+0.0;-0.0;0.0" : "0.0", CultureInfo.InvariantCulture) + " MiB";
}
