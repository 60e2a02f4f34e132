using System.ComponentModel;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// A system command that needs root (ip, mount): a test that cannot run it fails, naming what is missing, rather than
/// passing without the fault it was to inject.
/// </summary>
static class RootCommand
{
    /// <summary>Runs <paramref name="program"/> and returns what it printed; throws, saying what is missing, unless it exits 0.</summary>
    public static string Run(string program, params string[] args)
    {
        string command = $"{program} {string.Join(' ', args)}";
        try
        {
            var (code, stdout, stderr) = ChildProcess.Run(program, args, limit: TimeSpan.FromSeconds(30));
            return code == 0 ? stdout
                : throw new InvalidOperationException($"'{command}' failed ({stderr.Trim()}): the faults it injects need root (CAP_NET_ADMIN for ip, CAP_SYS_ADMIN for mount and ip netns)");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"'{command}' could not start ({e.Message}): the faults it injects need {program} installed", e);
        }
    }

    /// <summary>Runs <paramref name="program"/> for a clean-up, whatever the outcome: the thing removed may already be gone.</summary>
    public static void TryRun(string program, params string[] args)
    {
        try { ChildProcess.Run(program, args, limit: TimeSpan.FromSeconds(30)); }
        catch (Win32Exception) { } // not installed: nothing of it was made either
    }
}
