using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Cluster.Wire;
using Grpc.Core;

namespace CondenseCluster.Worker;

/// <summary>Serves the replica's whole state over the worker's data-plane endpoint (Protos/replica_state.proto).</summary>
sealed class ReplicaStateService(Replica replica) : ReplicaState.ReplicaStateBase
{
    public override async Task Fetch(FetchStateRequest request, IServerStreamWriter<StateChunk> responseStream, ServerCallContext context)
    {
        byte[] state;
        try { state = await replica.Run(() => replica.Save(request.Step)); }
        catch (InvalidOperationException e) { throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message)); }
        foreach (var chunk in StateChunks.Split(state, request.Step)) await responseStream.WriteAsync(chunk, context.CancellationToken);
    }

    public override async Task<StateLoaded> Load(IAsyncStreamReader<StateChunk> requestStream, ServerCallContext context)
    {
        using var state = new MemoryStream();
        long? step = null;
        await foreach (var chunk in requestStream.ReadAllAsync(context.CancellationToken))
        {
            if (step is not null && chunk.Step != step)
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"state chunks of steps {step} and {chunk.Step} are mixed"));
            step = chunk.Step;
            chunk.Data.WriteTo(state);
        }
        if (step is null) throw new RpcException(new Status(StatusCode.InvalidArgument, "no state was sent"));
        try
        {
            string checksum = await replica.Run(() => replica.Load(state.ToArray(), step.Value));
            return new StateLoaded { Step = step.Value, WeightChecksum = checksum };
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or InvalidOperationException)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"the state does not fit this replica: {e.Message}"));
        }
    }
}
