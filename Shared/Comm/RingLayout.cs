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
/// A rank's place in one ring, which is all the rank needs of it: the ring's identity (the digest of all its members'
/// endpoints in rank order, which the handshake compares), its size, the rank, and its own and its two neighbours'
/// endpoints. A coordinator sends each rank its places, not the whole ring's endpoints: a ring formed for N workers
/// costs N small messages rather than N lists of N.
/// </summary>
public sealed record RingPlace(ulong Digest, int Size, int Rank, string Self, string Left, string Right)
{
    /// <summary>Every member's place in the ring of <paramref name="endpoints"/> (in rank order), the digest computed once.</summary>
    public static RingPlace[] Around(IReadOnlyList<string> endpoints)
    {
        ulong digest = RingDigest.Of(endpoints);
        int size = endpoints.Count;
        return [.. Enumerable.Range(0, size).Select(r => new RingPlace(digest, size, r, endpoints[r], endpoints[(r + size - 1) % size], endpoints[(r + 1) % size]))];
    }
}

/// <summary>
/// Which rings a rank takes part in (DESIGN.md §2). One ring of all N ranks costs 2(N−1) hops of latency. With H hosts
/// of G ranks each, the hierarchical form costs 2(G−1) hops within the host and 2(H−1) across hosts: a reduce-scatter
/// within the host leaves each local rank l the host's sum of one chunk (<see cref="HostChunk"/>), the l-th ranks of
/// all hosts all-reduce that chunk in a ring of their own, and an all-gather within the host spreads the result. Each
/// chunk is still summed once per ring and then only copied, so every rank ends bit-identical. Hosts are the host
/// parts of the ranks' advertised endpoints. Pure functions: every rank's layout follows from the same list.
/// </summary>
/// <param name="Ring">the rank's place in its only ring, or in the ring within its host</param>
/// <param name="Across">its place in the ring across hosts, when hierarchical</param>
public sealed record RingLayout(RingPlace Ring, RingPlace? Across = null)
{
    /// <summary>Whether the ring within the host is followed by one across hosts.</summary>
    public bool Hierarchical => Across is not null;

    /// <summary>The part of a buffer of <paramref name="length"/> values this rank sums across hosts: the chunk the host's reduce-scatter leaves it.</summary>
    public (int Start, int Length) HostChunk(long length) => RingPlan.Chunk(length, Ring.Size, (Ring.Rank + 1) % Ring.Size);

    /// <summary>The layout of rank <paramref name="rank"/> among <paramref name="endpoints"/>.</summary>
    public static RingLayout Of(IReadOnlyList<string> endpoints, int rank, RingTopology topology)
    {
        if (rank < 0 || rank >= endpoints.Count) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of a ring of {endpoints.Count}");
        return All(endpoints, topology)[rank];
    }

    /// <summary>Every rank's layout, by rank, in time linear in the ranks.</summary>
    public static RingLayout[] All(IReadOnlyList<string> endpoints, RingTopology topology)
    {
        if (endpoints.Count == 0) throw new ArgumentException("a ring needs at least one member", nameof(endpoints));
        RingLayout[] Flat() => [.. RingPlace.Around(endpoints).Select(place => new RingLayout(place))];
        if (topology == RingTopology.Flat) return Flat();
        var hosts = endpoints.Select((endpoint, r) => (Host: HostOf(endpoint), Rank: r)).GroupBy(e => e.Host).Select(g => g.Select(e => e.Rank).ToArray()).ToArray();
        int perHost = hosts[0].Length;
        if (hosts.Length < 2 || perHost < 2 || hosts.Any(h => h.Length != perHost)) return Flat();
        var within = hosts.Select(h => RingPlace.Around([.. h.Select(r => endpoints[r])])).ToArray();               // [host][local]
        var across = Enumerable.Range(0, perHost).Select(l => RingPlace.Around([.. hosts.Select(h => endpoints[h[l]])])).ToArray(); // [local][host]
        var layouts = new RingLayout[endpoints.Count];
        for (int host = 0; host < hosts.Length; host++)
            for (int local = 0; local < perHost; local++)
                layouts[hosts[host][local]] = new RingLayout(within[host][local], across[local][host]);
        return layouts;
    }

    /// <summary>The host an endpoint is advertised at: ranks with the same one share a machine.</summary>
    public static string HostOf(string endpoint) => new Uri(endpoint).Host;

    public override string ToString() => Hierarchical
        ? $"hierarchical: rank {Ring.Rank} of {Ring.Size} on its host, rank {Across!.Rank} of {Across.Size} across hosts"
        : $"one ring: rank {Ring.Rank} of {Ring.Size}";
}
