using System.Runtime.InteropServices;

namespace CondenseCluster.Shared.Runtime;

/// <summary>
/// SIGINT (Ctrl+C) and SIGTERM (Kubernetes' preemption or eviction, <c>kill</c>) of a program that stops gracefully:
/// the runtime's default (exit at once) is cancelled, and each signal calls <c>stop(name, repeated)</c>, where
/// <c>repeated</c> says an earlier one came already, so that the program can stop at once instead.
/// </summary>
public sealed class StopSignals : IDisposable
{
    readonly PosixSignalRegistration[] registrations;
    int received;

    public StopSignals(Action<string, bool> stop) =>
        registrations = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM }.Select(signal => PosixSignalRegistration.Create(signal, context =>
        {
            context.Cancel = true;
            stop(context.Signal == PosixSignal.SIGINT ? "SIGINT" : "SIGTERM", Interlocked.Increment(ref received) > 1);
        }))];

    public void Dispose()
    {
        foreach (var registration in registrations) registration.Dispose();
    }
}
