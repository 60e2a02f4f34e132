using System.Globalization;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;
using Microsoft.Extensions.Hosting;

namespace CondenseCluster.Shared.Comm;

/// <summary>The server side of the data plane: a worker's left neighbour pushes its ring traffic here.</summary>
sealed class RingPeerService(RingInbox inbox, IHostApplicationLifetime lifetime) : RingPeer.RingPeerBase
{
    public const string GenerationHeader = "ring-generation";

    public override async Task<PushReply> Push(IAsyncStreamReader<RingMessage> requestStream, ServerCallContext context)
    {
        long generation = Generation(context);
        // Ends with the node too: Kestrel would otherwise wait for these long-lived streams when it stops.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            while (await requestStream.MoveNext(stop.Token))
                await inbox.DeliverAsync(generation, requestStream.Current, stop.Token);
        }
        catch (Exception e)
        {
            inbox.StreamEnded(generation, "its stream broke", e);
            throw;
        }
        inbox.StreamEnded(generation, "it closed its stream");
        return new PushReply();
    }

    public override async Task<ProbeReply> Probe(IAsyncStreamReader<RingMessage> requestStream, ServerCallContext context)
    {
        long bytes = 0;
        await foreach (var message in requestStream.ReadAllAsync(context.CancellationToken))
            bytes += message.Payload.Length;
        return new ProbeReply { Bytes = bytes };
    }

    static long Generation(ServerCallContext context) =>
        long.TryParse(context.RequestHeaders.GetValue(GenerationHeader), NumberStyles.Integer, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw new RpcException(new Status(StatusCode.InvalidArgument, $"the '{GenerationHeader}' request header is missing or not a number"));
}
