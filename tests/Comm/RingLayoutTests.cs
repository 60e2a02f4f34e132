using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

public class RingLayoutTests
{
    static string[] Endpoints(params string[] hosts) => [.. hosts.Select((h, i) => $"http://{h}:{5000 + i}")];

    [Fact]
    public void RanksOnEqualHostsFormARingEachAndTheirLocalPeersARingAcross()
    {
        // Ranks are ordered by name, not by host: the hosts interleave.
        var endpoints = Endpoints("a", "b", "a", "c", "b", "c");
        var layouts = Enumerable.Range(0, 6).Select(r => RingLayout.Of(endpoints, r, RingTopology.Auto)).ToArray();
        Assert.All(layouts, l => Assert.True(l.Hierarchical));
        Assert.Equal([endpoints[0], endpoints[2]], layouts[2].Ring);
        Assert.Equal((1, 0), (layouts[2].Rank, layouts[2].AcrossRank));
        Assert.Equal([endpoints[2], endpoints[4], endpoints[5]], layouts[2].Across!); // the second rank of each host, hosts in order of first rank
        Assert.Equal([endpoints[0], endpoints[1], endpoints[3]], layouts[0].Across!);
        Assert.Equal((1, 2), (layouts[5].Rank, layouts[5].AcrossRank));
        // Every rank is in exactly one ring within a host and one across.
        Assert.Equal(endpoints.Order(), layouts.SelectMany(l => l.Ring).Distinct().Order());
        Assert.Equal(6, layouts.Select(l => (string.Join(',', l.Ring), string.Join(',', l.Across!))).Distinct().Count());
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
        Assert.Equal(endpoints, layout.Ring);
        Assert.Equal(1, layout.Rank);
    }

    [Fact]
    public void FlatIsOneRingWhateverTheHosts()
    {
        var endpoints = Endpoints("a", "a", "b", "b");
        Assert.False(RingLayout.Of(endpoints, 3, RingTopology.Flat).Hierarchical);
    }

    [Fact]
    public void TheHostChunkIsWhatTheReduceScatterWithinTheHostLeavesTheRank()
    {
        var layout = RingLayout.Of(Endpoints("a", "a", "a", "b", "b", "b"), 4, RingTopology.Auto);
        Assert.Equal(1, layout.Rank);
        Assert.Equal(RingPlan.Chunk(100, 3, 2), layout.HostChunk(100));
    }
}
