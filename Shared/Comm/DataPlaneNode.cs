using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// One worker's end of the data plane (DESIGN.md §2): a Kestrel server (HTTP/2 without TLS) that its left neighbour
/// pushes to, and the stream to its right neighbour, renewed whenever the ring is configured.
/// </summary>
public sealed class DataPlaneNode : IAsyncDisposable
{
    readonly object gate = new();
    readonly DataPlaneOptions options;
    readonly RingInbox inbox;
    readonly List<RingTransport> retired = [];
    static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(1);
    WebApplication? server;
    long? generation;
    RingTransport? transport;
    RingAllReduce? ring;
    long sentByRetired;
    bool disposed;

    public DataPlaneNode(DataPlaneOptions? options = null)
    {
        this.options = options ?? new DataPlaneOptions();
        this.options.Validate();
        inbox = new RingInbox(this.options.InboxMessages);
    }

    /// <summary>The endpoint bound, e.g. http://127.0.0.1:41234; set by <see cref="StartAsync"/>. Listening on 0.0.0.0, peers need the host's own name or address with this port.</summary>
    public string Endpoint { get; private set; } = "";

    /// <summary>
    /// Binds and starts the server; returns the endpoint actually bound (the port chosen when it was 0).
    /// <paramref name="services"/> and <paramref name="endpoints"/> add more gRPC services on the same endpoint.
    /// </summary>
    public async Task<string> StartAsync(Action<IServiceCollection>? services = null, Action<IEndpointRouteBuilder>? endpoints = null,
        CancellationToken cancellationToken = default)
    {
        if (server != null) throw new InvalidOperationException("the data plane node is already started");
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        // Measured with bench/AllReduce: the data plane is bound by per-syscall and per-wakeup costs, not by bytes.
        // Waiting for data before renting a read buffer costs a zero-byte receive per read: on a stream that is always
        // busy that doubles the receive calls for nothing.
        builder.WebHost.UseSockets(sockets => sockets.WaitForDataBeforeAllocatingBuffer = false);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Parse(options.ListenAddress), options.Port, listen => listen.Protocols = HttpProtocols.Http2);
            // Kestrel's default windows (768 KiB a stream, 1 MiB a connection) are under one 1 MiB message: the left
            // neighbour stalled on every message until this node had parsed the previous one. The inbox bounds what
            // is held (InboxMessages), so the windows only need to cover it; the connection window leaves room for a
            // new generation's stream beside the old one's.
            long window = Math.Clamp((long)options.MessageBytes * (options.InboxMessages + 2), 1 << 20, 1 << 30);
            kestrel.Limits.Http2.InitialStreamWindowSize = (int)window;
            kestrel.Limits.Http2.InitialConnectionWindowSize = (int)Math.Min(2 * window, int.MaxValue);
            kestrel.Limits.MaxRequestBufferSize = 2 * window;
        });
        // Streams end with the node (RingPeerService); what is left of stopping is bounded like the outgoing streams.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = ShutdownGrace);
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(inbox);
        services?.Invoke(builder.Services);
        server = builder.Build();
        server.MapGrpcService<RingPeerService>();
        endpoints?.Invoke(server);
        await server.StartAsync(cancellationToken);
        string address = server.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return Endpoint = address;
    }

    /// <summary>
    /// Makes this node rank <paramref name="rank"/> of the ring <paramref name="endpoints"/>; an all-reduce still running
    /// on the previous ring is aborted. <paramref name="generation"/> must grow with every new ring, on every member alike.
    /// </summary>
    public void ConfigureRing(int rank, IReadOnlyList<string> endpoints, long generation)
    {
        int size = endpoints.Count;
        if (size < 1 || rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of a ring of {size}");
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (generation <= this.generation)
                throw new ArgumentException($"ring generation {generation} is not newer than the current {this.generation}", nameof(generation));
            this.generation = generation;
            RetireCurrent("the ring was reconfigured");
            RingNeighbour Member(int r) => new((r + size) % size, endpoints[(r + size) % size]);
            transport = size == 1 ? null : new RingTransport(generation, Member(rank - 1), Member(rank + 1), inbox, options.ProgressTimeout);
            sentByRetired += ring?.BytesSent ?? 0;
            ring = new RingAllReduce(rank, size, transport, options);
        }
    }

    /// <summary>Sums <paramref name="buffer"/> over the configured ring in float32; see <see cref="RingAllReduce.AllReduceAsync"/>.</summary>
    public Task AllReduceAsync(Memory<float> buffer, long operationId, CancellationToken cancellationToken = default) =>
        AllReduceAsync(buffer, operationId, WirePrecision.Float32, cancellationToken);

    /// <summary>Sums <paramref name="buffer"/> over the configured ring; see <see cref="RingAllReduce.AllReduceAsync"/>.</summary>
    public Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default)
    {
        RingAllReduce current;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            current = ring ?? throw new InvalidOperationException("configure the ring before the first all-reduce");
        }
        return current.AllReduceAsync(buffer, operationId, precision, cancellationToken);
    }

    /// <summary>Gradient bytes this node has sent through its rings (every generation).</summary>
    public long BytesSent
    {
        get { lock (gate) return sentByRetired + (ring?.BytesSent ?? 0); }
    }

    /// <summary>Aborts the all-reduce in flight, if any, and ends the current ring generation.</summary>
    public void Abort()
    {
        lock (gate) transport?.Abort("the owner aborted the ring");
    }

    /// <summary>Bytes per second of a raw push of <paramref name="bytes"/> to the right neighbour (no reduction).</summary>
    public Task<double> MeasureStreamBandwidthAsync(long bytes, CancellationToken cancellationToken = default)
    {
        RingTransport current;
        lock (gate) current = transport ?? throw new InvalidOperationException("the bandwidth probe needs a ring of at least two workers");
        return StreamBandwidth.MeasureAsync(current.Invoker, bytes, options.MessageBytes, cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        List<RingTransport> closing;
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            RetireCurrent("the worker is shutting down");
            closing = [.. retired];
        }
        // An idle stream closes gracefully, so that the right neighbour still reads the tail of the last all-reduce;
        // one that does not close at once (a stalled neighbour) is cut.
        var closed = Task.WhenAll(closing.Select(t => t.Closed));
        if (await Task.WhenAny(closed, Task.Delay(ShutdownGrace)) != closed)
            foreach (var t in closing) t.Abort("the worker is shutting down");
        await closed;
        inbox.Close();
        if (server != null)
        {
            await server.StopAsync(CancellationToken.None);
            await server.DisposeAsync();
        }
    }

    // Caller holds the gate.
    void RetireCurrent(string why)
    {
        retired.RemoveAll(t => t.Closed.IsCompleted);
        if (transport != null)
        {
            transport.Retire(why);
            retired.Add(transport);
        }
        transport = null;
        ring = null;
    }
}
