namespace CondenseCluster.Shared.Comm;

/// <summary>How the ranks of a job sum their buffers.</summary>
public enum RingTopology
{
    /// <summary>Hierarchical where the hosts allow it (at least two hosts, each with the same number of ranks, at least two), else one ring.</summary>
    Auto,
    /// <summary>One ring of every rank.</summary>
    Flat,
}

/// <summary>
/// Which rings a rank takes part in (DESIGN.md §2). One ring of all N ranks costs 2(N−1) hops of latency. With H hosts
/// of G ranks each, the hierarchical form costs 2(G−1) hops within the host and 2(H−1) across hosts: a reduce-scatter
/// within the host leaves each local rank l the host's sum of one chunk (<see cref="HostChunk"/>), the l-th ranks of
/// all hosts all-reduce that chunk in a ring of their own, and an all-gather within the host spreads the result. Each
/// chunk is still summed once per ring and then only copied, so every rank ends bit-identical. Hosts are the host
/// parts of the ranks' advertised endpoints. A pure function: every rank computes the same layout from the same list.
/// </summary>
public sealed record RingLayout(IReadOnlyList<string> Ring, int Rank, IReadOnlyList<string>? Across = null, int AcrossRank = 0)
{
    /// <summary>Whether the ring within the host is followed by one across hosts.</summary>
    public bool Hierarchical => Across is not null;

    /// <summary>The part of a buffer of <paramref name="length"/> values this rank sums across hosts: the chunk the host's reduce-scatter leaves it.</summary>
    public (int Start, int Length) HostChunk(long length) => RingPlan.Chunk(length, Ring.Count, (Rank + 1) % Ring.Count);

    public static RingLayout Of(IReadOnlyList<string> endpoints, int rank, RingTopology topology)
    {
        if (rank < 0 || rank >= endpoints.Count) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of a ring of {endpoints.Count}");
        var flat = new RingLayout(endpoints, rank);
        if (topology == RingTopology.Flat) return flat;
        var hosts = endpoints.Select((endpoint, r) => (Host: HostOf(endpoint), Rank: r)).GroupBy(e => e.Host).Select(g => g.Select(e => e.Rank).ToArray()).ToArray();
        int perHost = hosts[0].Length;
        if (hosts.Length < 2 || perHost < 2 || hosts.Any(h => h.Length != perHost)) return flat;
        int host = Array.FindIndex(hosts, h => h.Contains(rank));
        int local = Array.IndexOf(hosts[host], rank);
        return new RingLayout([.. hosts[host].Select(r => endpoints[r])], local, [.. hosts.Select(h => endpoints[h[local]])], host);
    }

    /// <summary>The host an endpoint is advertised at: ranks with the same one share a machine.</summary>
    public static string HostOf(string endpoint) => new Uri(endpoint).Host;

    public override string ToString() => Hierarchical
        ? $"hierarchical: rank {Rank} of {Ring.Count} on its host, rank {AcrossRank} of {Across!.Count} across hosts"
        : $"one ring: rank {Rank} of {Ring.Count}";
}
