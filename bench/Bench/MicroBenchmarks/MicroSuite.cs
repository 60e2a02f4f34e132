using System.CommandLine;
using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using TorchSharp;

namespace CondenseCluster.Bench.MicroBenchmarks;

/// <summary><c>micro</c>: the BenchmarkDotNet benchmarks of this assembly, run in this process.</summary>
static class MicroSuite
{
    /// <summary>libtorch intra-op threads every benchmark's global setup fixes, as bench/README.md's other figures use.</summary>
    public const int TorchThreads = 2;

    public static Command Command(string allocator)
    {
        var command = new Command("micro",
            "BenchmarkDotNet micro-benchmarks, in this process; every other argument goes to BenchmarkDotNet, e.g. --filter '*' --job short, or --list flat")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction(result => Run([.. result.UnmatchedTokens], allocator));
        return command;
    }

    static int Run(string[] benchmarkArgs, string allocator)
    {
        Console.WriteLine($"allocator: {allocator}; libtorch intra-op threads: {TorchThreads} (set in every global setup)");
        var config = ManualConfig.Create(DefaultConfig.Instance)
            // In process, as a mutator so that it also applies to jobs given on the command line (--job short): BenchmarkDotNet's
            // default toolchain builds and starts a generated project, which loses the libtorch loading fix of the build output
            // (ENVIRONMENT.md) and this process's allocator setting.
            .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).AsMutator())
            // Read when the summary is printed, after the setups ran: the threads libtorch really used.
            .AddColumn(new TagColumn("TorchThreads", _ => torch.get_num_threads().ToString(CultureInfo.InvariantCulture)));
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(MicroSuite).Assembly).Run(benchmarkArgs, config);
        bool failed = summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
        return failed ? 1 : 0;
    }
}
