using System.Runtime.InteropServices;

namespace CondenseCluster.Worker;

/// <summary>Where a worker can be made to fail: in a step's compute, inside its all-reduce, on a mask broadcast, while its state is fetched for a checkpoint.</summary>
enum FaultPoint { Compute, AllReduce, Masks, Checkpoint }

/// <summary>What the fault does: a crash (SIGKILL), a hung node (SIGSTOP), or a straggler that is alive but slow.</summary>
enum FaultAction { Kill, Stop, Slow }

/// <summary>
/// A failure the fault-injection tests (and anyone rehearsing an outage) plant in a worker with
/// <c>--fault kill|stop|slow@compute|allreduce|masks|checkpoint:N</c>: at the N-th global step (or mask version), the
/// process sends itself SIGKILL or SIGSTOP, or stalls for <see cref="SlowFor"/>, at exactly that point, which an
/// outside signal could only hit by chance. The line printed first carries the time, so a test can measure from it.
/// </summary>
sealed record FaultInjection(string WorkerId, FaultAction Action, FaultPoint Point, long When)
{
    /// <summary>
    /// How long a straggler stalls: well past a step and past a restarted worker's start on a loaded machine, well
    /// within the data plane's 60 s progress timeout.
    /// </summary>
    static readonly TimeSpan SlowFor = TimeSpan.FromSeconds(25);

    public static FaultInjection? Parse(string workerId, string? text)
    {
        if (text is null) return null;
        var parts = text.Split('@', ':');
        if (parts.Length != 3 || !Enum.TryParse<FaultAction>(parts[0], ignoreCase: true, out var action)
            || !Enum.TryParse<FaultPoint>(parts[1], ignoreCase: true, out var point) || !long.TryParse(parts[2], out long at) || at < 0)
            throw new ArgumentException($"--fault '{text}' is not kill|stop|slow@compute|allreduce|masks|checkpoint:N (e.g. kill@allreduce:12)");
        return new(workerId, action, point, at);
    }

    /// <summary>Fails here if this is the planted point.</summary>
    public void At(FaultPoint point, long value)
    {
        if (point != Point || value != When) return;
        string what = Action switch { FaultAction.Kill => "SIGKILL", FaultAction.Stop => "SIGSTOP", _ => $"stalling {SlowFor.TotalSeconds:0} s" };
        Console.WriteLine($"[{WorkerId}] fault injected: {what} at {Point} {When} ({DateTimeOffset.UtcNow:O})");
        Console.Out.Flush();
        if (Action == FaultAction.Slow) Thread.Sleep(SlowFor);
        else kill(Environment.ProcessId, Action == FaultAction.Stop ? 19 : 9);
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);
}
