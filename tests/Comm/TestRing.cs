using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Tests.Comm;

/// <summary>Several data-plane nodes in this process, each with its own ring listener and gRPC endpoint on 127.0.0.1, free ports.</summary>
sealed class TestRing : IAsyncDisposable
{
    TestRing(DataPlaneNode[] nodes) => Nodes = nodes;

    public DataPlaneNode[] Nodes { get; }

    /// <summary>Started nodes, made one ring of generation 1 in their order unless <paramref name="configure"/> is false.</summary>
    public static Task<TestRing> StartAsync(int size, DataPlaneOptions? options = null, bool configure = true) =>
        StartAsync(Enumerable.Repeat((options ?? new DataPlaneOptions()).ListenAddress, size).ToArray(), options, configure);

    /// <summary>One node on each of <paramref name="addresses"/> (several 127.0.0.x: simulated hosts).</summary>
    public static async Task<TestRing> StartAsync(string[] addresses, DataPlaneOptions? options = null, bool configure = true)
    {
        int size = addresses.Length;
        var nodes = addresses.Select(a => new DataPlaneNode((options ?? new DataPlaneOptions()) with { ListenAddress = a })).ToArray();
        await Task.WhenAll(nodes.Select(n => n.StartAsync()));
        var ring = new TestRing(nodes);
        if (configure) ring.Configure([.. Enumerable.Range(0, size)], generation: 1);
        return ring;
    }

    /// <summary>Makes a ring of the given nodes, in that order.</summary>
    public void Configure(int[] members, long generation, RingTopology topology = RingTopology.Auto)
    {
        var endpoints = members.Select(m => Nodes[m].Endpoint).ToArray();
        for (int rank = 0; rank < members.Length; rank++)
            Nodes[members[rank]].ConfigureRing(rank, endpoints, generation, topology);
    }

    /// <summary>Every member all-reduces its buffer; buffers[i] belongs to members[i].</summary>
    public Task AllReduceAsync(int[] members, float[][] buffers, long operationId) =>
        Task.WhenAll(members.Select((m, i) => Nodes[m].AllReduceAsync(buffers[i], operationId)));

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes) await node.DisposeAsync();
    }
}
