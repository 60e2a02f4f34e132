using System.Globalization;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;
using Microsoft.Extensions.Hosting;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The data-plane service as Grpc.AspNetCore binds it (<see cref="RingWire"/>): it calls the overrides of these
/// methods on an instance it makes per call, found through the virtual methods of this class.
/// </summary>
[BindServiceMethod(typeof(RingPeerBase), nameof(BindService))]
abstract class RingPeerBase
{
    public abstract Task<PushReply> Push(IAsyncStreamReader<RingFrame> requestStream, ServerCallContext context);

    public abstract Task<ProbeReply> Probe(IAsyncStreamReader<RingFrame> requestStream, ServerCallContext context);

    /// <summary>Declares the methods; Grpc.AspNetCore passes no instance, other binders may pass one.</summary>
    public static void BindService(ServiceBinderBase binder, RingPeerBase? service)
    {
        binder.AddMethod(RingWire.Push, service == null ? null : new ClientStreamingServerMethod<RingFrame, PushReply>(service.Push));
        binder.AddMethod(RingWire.Probe, service == null ? null : new ClientStreamingServerMethod<RingFrame, ProbeReply>(service.Probe));
    }
}

/// <summary>The server side of the data plane: a worker's left neighbour pushes its ring traffic here.</summary>
sealed class RingPeerService(RingInbox inbox, IHostApplicationLifetime lifetime) : RingPeerBase
{
    public const string GenerationHeader = "ring-generation";

    public override async Task<PushReply> Push(IAsyncStreamReader<RingFrame> requestStream, ServerCallContext context)
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

    public override async Task<ProbeReply> Probe(IAsyncStreamReader<RingFrame> requestStream, ServerCallContext context)
    {
        long bytes = 0;
        await foreach (var frame in requestStream.ReadAllAsync(context.CancellationToken))
        {
            bytes += frame.Payload.Length * sizeof(float);
            frame.Release();
        }
        return new ProbeReply { Bytes = bytes };
    }

    static long Generation(ServerCallContext context) =>
        long.TryParse(context.RequestHeaders.GetValue(GenerationHeader), NumberStyles.Integer, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw new RpcException(new Status(StatusCode.InvalidArgument, $"the '{GenerationHeader}' request header is missing or not a number"));
}
