using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

public class RingLayoutTests
{
    static string[] Endpoints(params string[] hosts) => [.. hosts.Select((h, i) => $"http://{h}:{5000 + i}")];

    /// <summary>The members of the ring a place is in, in rank order, walked from the places of all ranks.</summary>
    static string[] Members(RingPlace start, IEnumerable<RingPlace> places)
    {
        var byEndpoint = places.Where(p => p.Digest == start.Digest).ToDictionary(p => p.Self);
        var first = byEndpoint.Values.Single(p => p.Rank == 0);
        var members = new List<string> { first.Self };
        for (var p = byEndpoint[first.Right]; p.Rank != 0; p = byEndpoint[p.Right]) members.Add(p.Self);
        return [.. members];
    }

    [Fact]
    public void RanksOnEqualHostsFormARingEachAndTheirLocalPeersARingAcross()
    {
        // Ranks are ordered by name, not by host: the hosts interleave.
        var endpoints = Endpoints("a", "b", "a", "c", "b", "c");
        var layouts = RingLayout.All(endpoints, RingTopology.Auto);
        Assert.All(layouts, l => Assert.True(l.Hierarchical));
        Assert.All(layouts.Select((l, rank) => (l, rank)), x => Assert.Equal(endpoints[x.rank], x.l.Ring.Self));
        var within = layouts.Select(l => l.Ring).ToArray();
        var across = layouts.Select(l => l.Across!).ToArray();
        Assert.Equal([endpoints[0], endpoints[2]], Members(layouts[2].Ring, within));
        Assert.Equal((1, 0), (layouts[2].Ring.Rank, layouts[2].Across!.Rank));
        Assert.Equal([endpoints[2], endpoints[4], endpoints[5]], Members(layouts[2].Across!, across)); // the second rank of each host, hosts in order of first rank
        Assert.Equal([endpoints[0], endpoints[1], endpoints[3]], Members(layouts[0].Across!, across));
        Assert.Equal((1, 2), (layouts[5].Ring.Rank, layouts[5].Across!.Rank));
        // Three rings within hosts and two across, each with the digest of its members in order (what the handshake compares).
        Assert.Equal(3, within.Select(p => p.Digest).Distinct().Count());
        Assert.Equal(2, across.Select(p => p.Digest).Distinct().Count());
        Assert.Equal(RingDigest.Of([endpoints[2], endpoints[4], endpoints[5]]), layouts[4].Across!.Digest);
        Assert.Equal(layouts, Enumerable.Range(0, 6).Select(r => RingLayout.Of(endpoints, r, RingTopology.Auto)));
    }

    [Theory]
    [InlineData("a,a,a")]     // one host
    [InlineData("a,b,c")]     // one rank per host
    [InlineData("a,a,b,b,b")] // unequal hosts
    public void WhereTheHostsDoNotAllowItOneRingOfAllRanks(string hosts)
    {
        var endpoints = Endpoints(hosts.Split(','));
        var layout = RingLayout.Of(endpoints, 1, RingTopology.Auto);
        Assert.False(layout.Hierarchical);
        Assert.Equal(new RingPlace(RingDigest.Of(endpoints), endpoints.Length, 1, endpoints[1], endpoints[0], endpoints[2]), layout.Ring);
    }

    [Fact]
    public void FlatIsOneRingWhateverTheHostsAndItsLastRankClosesIt()
    {
        var endpoints = Endpoints("a", "a", "b", "b");
        var last = RingLayout.Of(endpoints, 3, RingTopology.Flat);
        Assert.False(last.Hierarchical);
        Assert.Equal((3, 4, endpoints[2], endpoints[0]), (last.Ring.Rank, last.Ring.Size, last.Ring.Left, last.Ring.Right));
        Assert.Equal(new RingPlace(RingDigest.Of(["http://x:1"]), 1, 0, "http://x:1", "http://x:1", "http://x:1"),
            RingLayout.Of(["http://x:1"], 0, RingTopology.Auto).Ring); // a ring of one is its own neighbour
    }

    [Fact]
    public void TheHostChunkIsWhatTheReduceScatterWithinTheHostLeavesTheRank()
    {
        var layout = RingLayout.Of(Endpoints("a", "a", "a", "b", "b", "b"), 4, RingTopology.Auto);
        Assert.Equal(1, layout.Ring.Rank);
        Assert.Equal(RingPlan.Chunk(100, 3, 2), layout.HostChunk(100));
    }
}
