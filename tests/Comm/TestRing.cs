using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Tests.Comm;

/// <summary>Several data-plane nodes in this process, each with its own ring listener and gRPC endpoint on 127.0.0.1, free ports.</summary>
sealed class TestRing : IAsyncDisposable
{
    TestRing(DataPlaneNode[] nodes) => Nodes = nodes;

    public DataPlaneNode[] Nodes { get; }

    /// <summary>Started nodes, made one ring of generation 1 in their order unless <paramref name="configure"/> is false.</summary>
    public static async Task<TestRing> StartAsync(int size, DataPlaneOptions? options = null, bool configure = true)
    {
        var nodes = Enumerable.Range(0, size).Select(_ => new DataPlaneNode(options)).ToArray();
        await Task.WhenAll(nodes.Select(n => n.StartAsync()));
        var ring = new TestRing(nodes);
        if (configure) ring.Configure([.. Enumerable.Range(0, size)], generation: 1);
        return ring;
    }

    /// <summary>Makes a ring of the given nodes, in that order.</summary>
    public void Configure(int[] members, long generation)
    {
        var endpoints = members.Select(m => Nodes[m].Endpoint).ToArray();
        for (int rank = 0; rank < members.Length; rank++)
            Nodes[members[rank]].ConfigureRing(rank, endpoints, generation);
    }

    /// <summary>Every member all-reduces its buffer; buffers[i] belongs to members[i].</summary>
    public Task AllReduceAsync(int[] members, float[][] buffers, long operationId) =>
        Task.WhenAll(members.Select((m, i) => Nodes[m].AllReduceAsync(buffers[i], operationId)));

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes) await node.DisposeAsync();
    }
}
