namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Which host and network namespace this process runs in: two ranks with the same key reach each other's abstract
/// Unix sockets, which are scoped by network namespace, so they use those instead of TCP.
/// </summary>
static class RingHost
{
    static readonly Lazy<string> key = new(() =>
    {
        try
        {
            string boot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
            string? network = new FileInfo("/proc/self/ns/net").LinkTarget;
            return network is null ? "" : $"{boot}/{network}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return ""; }
    });

    /// <summary>Empty where it cannot be known (not Linux): then every peer counts as another host.</summary>
    public static string Key => key.Value;

    public static bool UnixSockets => OperatingSystem.IsLinux() && Key.Length > 0;
}
