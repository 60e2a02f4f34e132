using System.Diagnostics;

namespace CondenseCluster.Tests;

/// <summary>A fresh temporary folder per test, removed afterwards.</summary>
public abstract class TempFolderTest : IDisposable
{
    protected string Folder { get; } = Directory.CreateTempSubdirectory("cc-test-").FullName;
    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

/// <summary>Runs a program to completion the way a user would, capturing what it prints.</summary>
static class ChildProcess
{
    public static (int Code, string Stdout, string Stderr) Run(string program, IEnumerable<string> args, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout, stderr.Result);
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
