using System.Runtime.InteropServices;

namespace CondenseCluster.Worker;

/// <summary>Where a worker can be made to fail: in a step's compute, inside its all-reduce, on a mask broadcast, while its state is fetched for a checkpoint.</summary>
enum FaultPoint { Compute, AllReduce, Masks, Checkpoint }

/// <summary>
/// A failure the fault-injection tests (and anyone rehearsing an outage) plant in a worker with
/// <c>--fault kill|stop@compute|allreduce|masks|checkpoint:N</c>: at the N-th global step (or mask version), the
/// process sends itself SIGKILL (a crash) or SIGSTOP (a hung node) at exactly that point, which an outside kill could
/// only hit by chance. The line printed first carries the time, so a test can measure detection from it.
/// </summary>
sealed record FaultInjection(string WorkerId, bool Stop, FaultPoint Point, long When)
{
    public static FaultInjection? Parse(string workerId, string? text)
    {
        if (text is null) return null;
        var parts = text.Split('@', ':');
        if (parts.Length != 3 || parts[0] is not ("kill" or "stop") || !Enum.TryParse<FaultPoint>(parts[1], ignoreCase: true, out var point)
            || !long.TryParse(parts[2], out long at) || at < 0)
            throw new ArgumentException($"--fault '{text}' is not kill|stop@compute|allreduce|masks|checkpoint:N (e.g. kill@allreduce:12)");
        return new(workerId, parts[0] == "stop", point, at);
    }

    /// <summary>Fails here if this is the planted point.</summary>
    public void At(FaultPoint point, long value)
    {
        if (point != Point || value != When) return;
        Console.WriteLine($"[{WorkerId}] fault injected: {(Stop ? "SIGSTOP" : "SIGKILL")} at {Point} {When} ({DateTimeOffset.UtcNow:O})");
        Console.Out.Flush();
        kill(Environment.ProcessId, Stop ? 19 : 9);
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);
}
