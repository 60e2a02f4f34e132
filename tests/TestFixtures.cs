using System.Diagnostics;
using System.Text;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using Xunit;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>Closeness of tensors, relative to the expected tensor's largest value.</summary>
static class TensorAssert
{
    /// <summary>
    /// Same shape, and largest |expected − actual| ≤ <paramref name="relative"/> × max(largest |expected|,
    /// <paramref name="floor"/>). Without a floor the expected tensor must not be all zeros, which would prove nothing.
    /// </summary>
    public static void Close(Tensor expected, Tensor actual, double relative = 1e-5, double floor = 0)
    {
        Assert.Equal(expected.shape, actual.shape);
        double largest = expected.abs().max().item<float>();
        if (floor == 0) Xunit.Assert.True(largest > 0, "the expected tensor is all zeros");
        double scale = Math.Max(largest, floor);
        double difference = (expected - actual).abs().max().item<float>();
        Assert.True(difference <= relative * scale, $"max difference {difference:E2} exceeds {relative:E0} x {scale:E2}");
    }
}

/// <summary>Two trained models of the same job, saved as model files, compared.</summary>
static class SavedModels
{
    /// <summary>
    /// The largest difference of a parameter relative to the expected parameter's scale, and the checksums of both
    /// models' masks.
    /// </summary>
    public static (double MaxRelativeDifference, string ExpectedMasks, string ActualMasks) Compare(string expectedFile, string actualFile)
    {
        using var expected = ModelFile.Load(expectedFile);
        using var actual = ModelFile.Load(actualFile);
        var weights = expected.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        double worst = 0;
        foreach (var (name, parameter) in actual.named_parameters())
        {
            using var difference = (parameter - weights[name]).abs().max();
            using var scale = weights[name].abs().max();
            worst = Math.Max(worst, difference.item<float>() / Math.Max(scale.item<float>(), 1e-12));
        }
        return (worst, ModelCondensing.Checksum(ModelCondensing.Masks(expected)), ModelCondensing.Checksum(ModelCondensing.Masks(actual)));
    }
}

/// <summary>A fresh temporary folder per test, removed afterwards.</summary>
public abstract class TempFolderTest : IDisposable
{
    protected string Folder { get; } = Directory.CreateTempSubdirectory("cc-test-").FullName;
    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

/// <summary>Runs a program to completion the way a user would, capturing what it prints.</summary>
static class ChildProcess
{
    static readonly TimeSpan DefaultLimit = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Runs <paramref name="program"/>; one that runs past <paramref name="limit"/> (10 min by default) is killed with its
    /// children and fails the test with what it printed, so a hung child cannot hold up the whole test run.
    /// <paramref name="build"/>: the program builds (<c>dotnet run</c>), see <see cref="ForChildBuild"/>.
    /// </summary>
    public static (int Code, string Stdout, string Stderr) Run(string program, IEnumerable<string> args, string? workingDirectory = null,
        TimeSpan? limit = null, bool build = false)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        foreach (var a in args) start.ArgumentList.Add(a);
        if (build) ForChildBuild(start);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(limit ?? DefaultLimit))
        {
            process.Kill(entireProcessTree: true);
            Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(30));
            Assert.Fail($"{program} {string.Join(' ', args)} ran past {(limit ?? DefaultLimit).TotalMinutes:0} min and was killed:\n"
                + (stdout.IsCompleted ? stdout.Result : "") + (stderr.IsCompleted ? stderr.Result : ""));
        }
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// A build started from a test: `dotnet test` runs the tests inside an MSBuild-launched host, whose settings must not
    /// steer the child build, and the build must leave no MSBuild node or server behind holding the test's pipes open.
    /// </summary>
    public static void ForChildBuild(ProcessStartInfo start)
    {
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(name);
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
    }
}

/// <summary>The coordinator program, run as a separate process the way a user runs it (workers it starts are processes too).</summary>
static class CoordinatorProgram
{
    public static (int Code, string Output) Run(params string[] args)
    {
        var (code, stdout, stderr) = ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "condense-coordinator.dll"), .. args]);
        return (code, stdout + stderr);
    }
}

/// <summary>A program of this build started in the background through dotnet, each line it prints gathered and passed on.</summary>
static class BackgroundProgram
{
    /// <param name="launcher">a command that runs dotnet for us by replacing itself with it (e.g. ip netns exec NS), so the process is still dotnet's</param>
    public static Process Start(string dll, IEnumerable<string> args, StringBuilder output, Action<string> onLine,
        IReadOnlyDictionary<string, string>? environment = null, IReadOnlyList<string>? launcher = null)
    {
        string[] command = [.. launcher ?? [], "dotnet", Path.Combine(AppContext.BaseDirectory, dll), .. args];
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command[1..]) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        var process = Process.Start(start)!;
        DataReceivedEventHandler gather = (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            onLine(e.Data);
        };
        process.OutputDataReceived += gather;
        process.ErrorDataReceived += gather;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Sends the process <paramref name="signal"/> (TERM, INT, ...) as Kubernetes or a shell does.</summary>
    public static void Signal(Process process, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", process.Id.ToString()])!;
        kill.WaitForExit();
    }

    /// <summary>Gives the process <paramref name="grace"/> to end by itself, then kills it with what it started.</summary>
    public static void End(Process process, TimeSpan grace)
    {
        if (!process.HasExited && !process.WaitForExit(grace)) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        process.Dispose();
    }
}
