using System.Collections.Concurrent;
using System.Net.Sockets;
using CondenseCluster.Shared.Cluster.Wire;
using Grpc.Core;
using Grpc.Net.Client;

namespace CondenseCluster.Shared.Cluster;

/// <summary>What is done with a worker's data endpoint directly, not through Akka: whole replica states, and whether it is gone.</summary>
public interface IReplicaStates
{
    Task<byte[]> FetchAsync(string endpoint, long step);
    Task<string> LoadAsync(string endpoint, long step, byte[] state);

    /// <summary>True when nothing listens at the endpoint any more: the worker's process is gone (a stopped one still accepts).</summary>
    Task<bool> GoneAsync(string endpoint);
}

/// <summary>Fetches and loads replica states over the workers' state services (Protos/replica_state.proto).</summary>
public sealed class ReplicaStateClient : IReplicaStates, IDisposable
{
    static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5), ConnectTimeout = TimeSpan.FromSeconds(1);
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

    public async Task<bool> GoneAsync(string endpoint)
    {
        var uri = new Uri(endpoint);
        using var socket = new TcpClient();
        using var timeout = new CancellationTokenSource(ConnectTimeout);
        try
        {
            await socket.ConnectAsync(uri.Host, uri.Port, timeout.Token);
            return false;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.HostUnreachable or SocketError.HostNotFound)
        {
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false; // no answer is not proof: the failure detector decides about silent nodes
        }
    }

    ReplicaState.ReplicaStateClient Client(string endpoint) => new(channels.GetOrAdd(endpoint, e => GrpcChannel.ForAddress(e)));

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}
