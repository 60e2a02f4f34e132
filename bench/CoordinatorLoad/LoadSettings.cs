using System.Globalization;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Bench.CoordinatorLoad;

sealed class UsageException(string message) : Exception(message);

/// <summary>What the bench runs; the simulated workers' process gets the same settings, plus where to join and which page to open.</summary>
sealed record LoadSettings
{
    public const string Usage = """
        coordinator-load-bench [--workers 64,256,1024] [--steps 60] [--rate 10] [--checksum-every 10] [--workers-per-system 256]
          --workers             numbers of simulated workers, one job each, run one after the other
          --steps               steps per job; its schedule spans twice as many, so that the three condensing rounds of
                                CondenseNet-74 (C = 4) fall after a third, two thirds and all of them; 5 steps after
                                them one worker fails, and the job is stopped once the others train on
          --rate                steps per second every simulated worker reports
          --checksum-every      steps between weight checksums in the workers' reports (the job's --checksum-every)
          --workers-per-system  simulated workers per actor system (cluster member) in the workers' process
        """;

    /// <summary>The model whose real mask and importance shapes cross the control plane.</summary>
    public const string Arch = "condensenet-74-c4";
    public static readonly CondenseNetConfig Model = CondenseNetConfig.Preset(Arch, "imagenet");

    public int[] Workers { get; init; } = [64, 256, 1024];
    public int Steps { get; init; } = 60;
    public double Rate { get; init; } = 10;
    public int ChecksumEvery { get; init; } = 10;
    public int WorkersPerSystem { get; init; } = 256;

    /// <summary>The step before which one simulated worker fails: after the last condensing round, so the recovery runs with every mask in force.</summary>
    public long FailureStep => Steps + 5;

    public static LoadSettings Parse(IReadOnlyList<string> args)
    {
        var settings = new LoadSettings();
        for (int i = 0; i < args.Count; i += 2)
        {
            if (i + 1 >= args.Count) throw new UsageException($"{args[i]} needs a value");
            string value = args[i + 1];
            settings = args[i] switch
            {
                "--workers" => settings with { Workers = value.Split(',').Select(n => Positive(n, "--workers")).ToArray() },
                "--steps" => settings with { Steps = Positive(value, "--steps") },
                "--rate" => settings with { Rate = double.TryParse(value, CultureInfo.InvariantCulture, out double rate) && rate > 0 ? rate
                    : throw new UsageException($"--rate {value}: a positive number of steps per second") },
                "--checksum-every" => settings with { ChecksumEvery = Positive(value, "--checksum-every") },
                "--workers-per-system" => settings with { WorkersPerSystem = Positive(value, "--workers-per-system") },
                _ => throw new UsageException($"unknown option {args[i]}"),
            };
        }
        return settings;
    }

    /// <summary>The options that give the simulated workers' process these settings.</summary>
    public IEnumerable<string> ToArgs() =>
        ["--steps", $"{Steps}", "--rate", Rate.ToString(CultureInfo.InvariantCulture), "--checksum-every", $"{ChecksumEvery}",
         "--workers-per-system", $"{WorkersPerSystem}"];

    static int Positive(string value, string option) =>
        int.TryParse(value, out int n) && n > 0 ? n : throw new UsageException($"{option} {value}: a positive whole number");
}
