using System.Diagnostics;
using CondenseCluster.Shared.Comm.Wire;
using Google.Protobuf;
using Grpc.Core;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The raw speed of a gRPC client stream between two data endpoints: bytes pushed one way and only counted, so that
/// the socket transport can be compared with what the ring would get from gRPC (bench/AllReduce). Its payload is raw
/// bytes, not a protobuf message, so that parsing costs nothing on either side.
/// </summary>
public static class GrpcStreamProbe
{
    /// <summary>An outgoing message owns its bytes; an incoming one knows only how many arrived.</summary>
    public sealed record Chunk(byte[]? Bytes, long Length);

    static readonly Marshaller<Chunk> Chunks = new(
        (chunk, context) => context.Complete(chunk.Bytes!),
        context => new Chunk(null, context.PayloadLength));

    static readonly Method<Chunk, ProbeReply> PushMethod = new(MethodType.ClientStreaming, "condensecluster.comm.StreamProbe", "Push", Chunks,
        Marshallers.Create(reply => reply.ToByteArray(), ProbeReply.Parser.ParseFrom));

    /// <summary>Bytes per second of <paramref name="bytes"/> pushed to <paramref name="invoker"/>'s endpoint in messages of <paramref name="messageBytes"/>.</summary>
    public static async Task<double> MeasureAsync(CallInvoker invoker, long bytes, int messageBytes, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var payload = new byte[messageBytes];
        var watch = Stopwatch.StartNew();
        using var call = invoker.AsyncClientStreamingCall(PushMethod, null, new CallOptions(cancellationToken: cancellationToken));
        for (long sent = 0; sent < bytes; sent += messageBytes)
        {
            var message = bytes - sent >= messageBytes ? payload : payload[..(int)(bytes - sent)];
            await call.RequestStream.WriteAsync(new Chunk(message, message.Length), cancellationToken);
        }
        await call.RequestStream.CompleteAsync();
        var reply = await call.ResponseAsync;
        return reply.Bytes / watch.Elapsed.TotalSeconds;
    }

    /// <summary>The receiving end, as Grpc.AspNetCore binds it.</summary>
    [BindServiceMethod(typeof(Service), nameof(BindService))]
    public class Service
    {
        public static void BindService(ServiceBinderBase binder, Service? service) =>
            binder.AddMethod(PushMethod, service == null ? null : new ClientStreamingServerMethod<Chunk, ProbeReply>(service.Push));

        // Grpc.AspNetCore binds the virtual method of the declaring type that has the gRPC method's name.
        public virtual async Task<ProbeReply> Push(IAsyncStreamReader<Chunk> requestStream, ServerCallContext context)
        {
            long bytes = 0;
            await foreach (var chunk in requestStream.ReadAllAsync(context.CancellationToken)) bytes += chunk.Length;
            return new ProbeReply { Bytes = bytes };
        }
    }
}
