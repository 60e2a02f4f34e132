using System.Text.RegularExpressions;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// Workers each in a Linux network namespace of their own, linked to the host (where the coordinator runs) by a veth
/// pair on one bridge, so that a worker's network can be cut and restored: its host-side link set down silences both
/// directions while the process runs on, as in a partition. Needs root and iproute2. Everything is removed on
/// disposal; the names carry this process's id (runs side by side do not meet), and the leftovers of a run whose
/// process is gone (one that crashed before its clean-up) are removed first.
/// </summary>
sealed partial class WorkerNetwork : IDisposable
{
    // Interface names have at most 15 characters: "cn" + a process id (up to 7 digits) + a role letter + a slot.
    const string Prefix = "cn";
    readonly string stem = $"{Prefix}{Environment.ProcessId}";
    readonly string subnet;
    readonly string[] workers;

    /// <summary>A namespace and a link for each of <paramref name="workers"/>, by name.</summary>
    public WorkerNetwork(IReadOnlyList<string> workers)
    {
        this.workers = [.. workers];
        RemoveLeftovers();
        subnet = FreeSubnet();
        try
        {
            RootCommand.Run("ip", "link", "add", Bridge(stem), "type", "bridge");
            RootCommand.Run("ip", "address", "add", $"{HostAddress}/24", "dev", Bridge(stem));
            RootCommand.Run("ip", "link", "set", Bridge(stem), "up");
            for (int slot = 0; slot < workers.Count; slot++)
            {
                string space = Namespace(stem, slot), link = HostLink(stem, slot);
                RootCommand.Run("ip", "netns", "add", space);
                // The namespace's end is created inside it, where it is the only interface besides lo.
                RootCommand.Run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", space);
                RootCommand.Run("ip", "link", "set", link, "master", Bridge(stem), "up");
                RootCommand.Run("ip", "netns", "exec", space, "ip", "address", "add", $"{Address(workers[slot])}/24", "dev", "eth0");
                RootCommand.Run("ip", "netns", "exec", space, "ip", "link", "set", "eth0", "up");
                RootCommand.Run("ip", "netns", "exec", space, "ip", "link", "set", "lo", "up");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The host's address on the bridge: the coordinator's --host.</summary>
    public string HostAddress => $"{subnet}.1";

    /// <summary>The address of <paramref name="worker"/> in its namespace: its --host.</summary>
    public string Address(string worker) => $"{subnet}.{10 + Slot(worker)}";

    /// <summary>The command that runs a program in the namespace of <paramref name="worker"/> (it replaces itself with the program).</summary>
    public string[] Launcher(string worker) => ["ip", "netns", "exec", Namespace(stem, Slot(worker))];

    /// <summary>Cuts <paramref name="worker"/> off: nothing crosses its link either way until <see cref="Restore"/>.</summary>
    public void Cut(string worker) => RootCommand.Run("ip", "link", "set", HostLink(stem, Slot(worker)), "down");

    public void Restore(string worker) => RootCommand.Run("ip", "link", "set", HostLink(stem, Slot(worker)), "up");

    static string Bridge(string stem) => $"{stem}b";

    /// <summary>The host-side end of a slot's veth pair, on the bridge: setting it down cuts the worker off.</summary>
    static string HostLink(string stem, int slot) => $"{stem}h{slot}";

    int Slot(string worker) => Array.IndexOf(workers, worker) is >= 0 and var slot ? slot : throw new ArgumentException($"{worker} has no namespace");

    static string Namespace(string stem, int slot) => $"{stem}n{slot}";

    public void Dispose() => Remove(stem, Enumerable.Range(0, workers.Length).Select(slot => Namespace(stem, slot)));

    /// <summary>Removing a namespace removes its veth pair with it; the bridge goes last.</summary>
    static void Remove(string stem, IEnumerable<string> namespaces)
    {
        foreach (string space in namespaces) RootCommand.TryRun("ip", "netns", "delete", space);
        RootCommand.TryRun("ip", "link", "delete", Bridge(stem));
    }

    /// <summary>Removes the namespaces and bridges of runs whose process no longer exists.</summary>
    static void RemoveLeftovers()
    {
        var namespaces = RootCommand.Run("ip", "netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]).ToArray();
        // "7: cn123h0@if2: <BROADCAST,...": the name, without the peer after '@'.
        var links = RootCommand.Run("ip", "-o", "link", "show").Split('\n').Select(l => l.Split(':', 3) is [_, var name, _] ? name.Trim().Split('@')[0] : "");
        foreach (var process in namespaces.Concat(links).Select(n => Leftover().Match(n)).Where(m => m.Success).GroupBy(m => m.Groups[1].Value))
            if (!Directory.Exists($"/proc/{process.Key}"))
            {
                string stem = $"{Prefix}{process.Key}";
                Remove(stem, namespaces.Where(n => n.StartsWith($"{stem}n")));
            }
    }

    /// <summary>A /24 in 10.201.0.0/16 that no interface of the host uses.</summary>
    static string FreeSubnet()
    {
        var used = UsedSubnet().Matches(RootCommand.Run("ip", "-o", "-4", "address", "show")).Select(m => int.Parse(m.Groups[1].Value)).ToHashSet();
        int free = Enumerable.Range(0, 256).FirstOrDefault(s => !used.Contains(s), -1);
        return free >= 0 ? $"10.201.{free}" : throw new InvalidOperationException("every /24 of 10.201.0.0/16 is in use on this host");
    }

    [GeneratedRegex(@"^cn(\d+)[bhn]\d*$")]
    private static partial Regex Leftover();

    [GeneratedRegex(@"inet 10\.201\.(\d+)\.")]
    private static partial Regex UsedSubnet();
}
