using System.Globalization;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;
using Microsoft.Extensions.Hosting;

namespace CondenseCluster.Shared.Comm;

/// <summary>The server side of the data plane: a worker's left neighbour pushes its ring traffic here.</summary>
sealed class RingPeerService(RingInbox inbox, IHostApplicationLifetime lifetime) : RingPeer.RingPeerBase
{
    public const string GenerationHeader = "ring-generation";
    public const string RankHeader = "ring-rank";

    public override async Task<PushReply> Push(IAsyncStreamReader<RingMessage> requestStream, ServerCallContext context)
    {
        long generation = Header(context, GenerationHeader);
        string sender = $"rank {Header(context, RankHeader)} ({context.Peer})";
        // Ends with the node too: Kestrel would otherwise wait for these long-lived streams when it stops.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            while (await requestStream.MoveNext(stop.Token))
                await inbox.DeliverAsync(generation, requestStream.Current, stop.Token);
        }
        catch (Exception e)
        {
            inbox.StreamEnded(generation, $"{sender}'s stream broke", e);
            throw;
        }
        inbox.StreamEnded(generation, $"{sender} closed its stream");
        return new PushReply();
    }

    public override async Task<ProbeReply> Probe(IAsyncStreamReader<RingMessage> requestStream, ServerCallContext context)
    {
        long bytes = 0;
        await foreach (var message in requestStream.ReadAllAsync(context.CancellationToken))
            bytes += message.Payload.Length;
        return new ProbeReply { Bytes = bytes };
    }

    static long Header(ServerCallContext context, string key) =>
        long.TryParse(context.RequestHeaders.GetValue(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw new RpcException(new Status(StatusCode.InvalidArgument, $"the '{key}' request header is missing or not a number"));
}
