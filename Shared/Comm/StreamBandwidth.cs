using System.Diagnostics;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The raw speed of a data-plane stream: the same messages as an all-reduce, pushed one way with nothing to add, so
/// that all-reduce throughput can be reported as a ratio to it.
/// </summary>
static class StreamBandwidth
{
    public static async Task<double> MeasureAsync(CallInvoker invoker, long bytes, int messageBytes, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var payload = new float[messageBytes / sizeof(float)];
        var watch = Stopwatch.StartNew();
        using var call = invoker.AsyncClientStreamingCall(RingWire.Probe, null, new CallOptions(cancellationToken: cancellationToken));
        var slice = new RingSlice(RingPhase.ReduceScatter, 0, 0, 0, 0);
        for (long sent = 0; sent < bytes; sent += messageBytes)
        {
            int floats = (int)Math.Min(payload.Length, (bytes - sent) / sizeof(float));
            await call.RequestStream.WriteAsync(RingFrame.Outgoing(0, 0, slice, payload.AsMemory(0, floats)), cancellationToken);
        }
        await call.RequestStream.CompleteAsync();
        var reply = await call.ResponseAsync;
        double seconds = watch.Elapsed.TotalSeconds;
        return reply.Bytes / seconds;
    }
}
