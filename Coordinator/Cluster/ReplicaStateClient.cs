using System.Collections.Concurrent;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Cluster.Wire;
using Grpc.Core;
using Grpc.Net.Client;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>Fetches and loads replica states over the workers' state services (Protos/replica_state.proto).</summary>
sealed class ReplicaStateClient : IReplicaStates, IDisposable
{
    static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5);
    readonly ConcurrentDictionary<string, GrpcChannel> channels = new();

    public async Task<byte[]> FetchAsync(string endpoint, long step)
    {
        using var call = Client(endpoint).Fetch(new FetchStateRequest { Step = step }, deadline: DateTime.UtcNow + Deadline);
        using var state = new MemoryStream();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync()) chunk.Data.WriteTo(state);
        return state.ToArray();
    }

    public async Task<string> LoadAsync(string endpoint, long step, byte[] state)
    {
        using var call = Client(endpoint).Load(deadline: DateTime.UtcNow + Deadline);
        foreach (var chunk in StateChunks.Split(state, step)) await call.RequestStream.WriteAsync(chunk);
        await call.RequestStream.CompleteAsync();
        return (await call).WeightChecksum;
    }

    ReplicaState.ReplicaStateClient Client(string endpoint) => new(channels.GetOrAdd(endpoint, e => GrpcChannel.ForAddress(e)));

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}
