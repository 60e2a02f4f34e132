using System.Diagnostics;
using CondenseCluster.Shared.Runtime;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>
/// The embedded cluster's worker processes: the <c>condense-worker</c> program next to this one, started on loopback
/// with the coordinator as seed and the allocator settings as tunables (<see cref="NativeAllocator.Tunables"/>), unless
/// this process was given its own. Their output is passed through; an early exit is reported so the job does not wait.
/// </summary>
sealed class LocalWorkers : IDisposable
{
    static readonly TimeSpan ExitGrace = TimeSpan.FromSeconds(15);
    readonly List<(string Name, Process Process)> processes = [];

    public LocalWorkers(int count, string seed, string device, int threads, Action<string, int> exited)
    {
        string worker = Path.Combine(AppContext.BaseDirectory, "condense-worker.dll");
        if (!File.Exists(worker))
            throw new FileNotFoundException($"the worker program '{worker}' is missing; build the solution (dotnet build) so it lands next to the coordinator");
        // Workers start the way this coordinator did: through dotnet, or through their own launcher (a published app).
        string launcher = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "condense-worker.exe" : "condense-worker");
        string? dotnet = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath
            : File.Exists(launcher) ? null : "dotnet";
        for (int i = 1; i <= count; i++)
        {
            string name = $"worker-{i}";
            // Their input is a pipe from this process, which closes when it ends however it ends: they exit with it (--exit-with-parent).
            var start = new ProcessStartInfo(dotnet ?? launcher)
                { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            if (dotnet is not null) start.ArgumentList.Add(worker);
            if (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is null) start.Environment["GLIBC_TUNABLES"] = NativeAllocator.Tunables;
            foreach (var arg in new[] { "--seed", seed, "--name", name, "--host", "127.0.0.1", "--device", device, "--threads", threads.ToString(), "--exit-with-parent" })
                start.ArgumentList.Add(arg);
            var process = new Process { StartInfo = start, EnableRaisingEvents = true };
            process.OutputDataReceived += (_, line) => { if (line.Data is not null) Console.WriteLine(line.Data); };
            process.ErrorDataReceived += (_, line) => { if (line.Data is not null) Console.Error.WriteLine(line.Data); };
            process.Exited += (_, _) => exited(name, process.ExitCode);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            processes.Add((name, process));
        }
    }

    /// <summary>Waits for the workers to leave after the job ended; any still running after a grace period is killed.</summary>
    public void Dispose()
    {
        foreach (var (name, process) in processes)
        {
            if (!process.WaitForExit(ExitGrace))
            {
                Console.Error.WriteLine($"warning: {name} did not exit within {ExitGrace.TotalSeconds:0} s of the job's end; killing it");
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
            process.Dispose();
        }
    }
}
