using System.Net;
using Grpc.Net.Client;
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
/// One worker's end of the data plane (DESIGN.md §2): a ring listener for its left neighbour's connection (TCP, and a
/// Unix socket for a neighbour on the same host), its connection to the right neighbour, renewed whenever the ring is
/// configured, and a gRPC endpoint (Kestrel, HTTP/2 without TLS) for what is small or rare: ring set-up, and the
/// services its owner adds (the replica state).
/// </summary>
public sealed class DataPlaneNode : IAsyncDisposable, IAllReduce
{
    readonly object gate = new();
    readonly DataPlaneOptions options;
    readonly RingListener listener;
    readonly RingConnector connector;
    readonly RingIoThread sender = new("ring-send"), receiver = new("ring-receive");
    static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(1);
    WebApplication? server;
    long? generation;
    IRingLink? link;
    RingAllReduce? ring;
    long sentByRetired;
    bool disposed;

    public DataPlaneNode(DataPlaneOptions? options = null)
    {
        this.options = options ?? new DataPlaneOptions();
        this.options.Validate();
        listener = new RingListener(IPAddress.Parse(this.options.ListenAddress), this.options.RingPort, this.options.SegmentBytes, this.options.HandshakeTimeout);
        connector = new RingConnector(this.options);
    }

    /// <summary>The gRPC endpoint bound, e.g. http://127.0.0.1:41234; set by <see cref="StartAsync"/>. Listening on 0.0.0.0, peers need the host's own name or address with this port.</summary>
    public string Endpoint { get; private set; } = "";

    /// <summary>The ring listener's TCP port.</summary>
    public int RingPort => listener.TcpPort;

    /// <summary>
    /// Binds and starts the gRPC endpoint; returns the endpoint actually bound (the port chosen when it was 0).
    /// <paramref name="services"/> and <paramref name="endpoints"/> add more gRPC services on the same endpoint.
    /// </summary>
    public async Task<string> StartAsync(Action<IServiceCollection>? services = null, Action<IEndpointRouteBuilder>? endpoints = null,
        CancellationToken cancellationToken = default)
    {
        if (server != null) throw new InvalidOperationException("the data plane node is already started");
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
            kestrel.Listen(IPAddress.Parse(options.ListenAddress), options.Port, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = ShutdownGrace);
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(listener);
        services?.Invoke(builder.Services);
        server = builder.Build();
        server.MapGrpcService<RingSetupService>();
        server.MapGrpcService<GrpcStreamProbe.Service>();
        endpoints?.Invoke(server);
        await server.StartAsync(cancellationToken);
        string address = server.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return Endpoint = address;
    }

    /// <summary>
    /// Makes this node rank <paramref name="rank"/> of the ring <paramref name="endpoints"/> (the members' gRPC
    /// endpoints, in ring order) and starts connecting to its right neighbour; an all-reduce still running on the
    /// previous ring is aborted. <paramref name="generation"/> must grow with every new ring, on every member alike.
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
            link?.Retire("the ring was reconfigured");
            sentByRetired += ring?.BytesSent ?? 0;
            link = size == 1 ? null : new SocketRingLink(generation, rank, endpoints, listener, connector);
            ring = new RingAllReduce(rank, size, link, options, sender, receiver);
        }
    }

    public int Rank => Current.Rank;

    public int Size => Current.Size;

    /// <summary>How the connection to the right neighbour travels ("tcp", "unix"; "connecting" before it is open), or null on a ring of one.</summary>
    public string? Transport
    {
        get { lock (gate) return link?.Transport; }
    }

    /// <summary>Sums <paramref name="buffer"/> over the configured ring in float32; see <see cref="AllReduceAsync(Memory{float}, long, WirePrecision, CancellationToken)"/>.</summary>
    public Task AllReduceAsync(Memory<float> buffer, long operationId, CancellationToken cancellationToken = default) =>
        AllReduceAsync(buffer, operationId, WirePrecision.Float32, cancellationToken);

    /// <summary>
    /// Replaces <paramref name="buffer"/> by the elementwise sum over the ring (the caller divides), bit-identical on
    /// every rank. Every rank passes the same length, the same <paramref name="operationId"/> sequence and the same
    /// <paramref name="precision"/>. Fails with <see cref="AllReduceException"/>; a cancelled
    /// <paramref name="cancellationToken"/> throws OperationCanceledException. After either, the buffer holds partial
    /// sums and the ring must be configured anew.
    /// </summary>
    public Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
        Current.AllReduceAsync(buffer, operationId, precision, cancellationToken);

    RingAllReduce Current
    {
        get
        {
            lock (gate)
            {
                ObjectDisposedException.ThrowIf(disposed, this);
                return ring ?? throw new InvalidOperationException("configure the ring before the first all-reduce");
            }
        }
    }

    /// <summary>Payload bytes this node has sent through its rings (every generation).</summary>
    public long BytesSent
    {
        get { lock (gate) return sentByRetired + (ring?.BytesSent ?? 0); }
    }

    /// <summary>Aborts the all-reduce in flight, if any, and ends the current ring generation.</summary>
    public void Abort()
    {
        lock (gate) link?.Abort("the owner aborted the ring");
    }

    /// <summary>Bytes per second of a raw push of <paramref name="bytes"/> to the right neighbour's ring listener, over the transport the ring takes.</summary>
    public Task<double> MeasureSocketBandwidthAsync(long bytes, CancellationToken cancellationToken = default)
    {
        var right = RightNeighbour();
        return Task.Factory.StartNew(() => connector.Probe(right, bytes, cancellationToken), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Bytes per second of a raw gRPC client stream of <paramref name="bytes"/> to the right neighbour's endpoint, in messages of one segment.</summary>
    public async Task<double> MeasureGrpcStreamBandwidthAsync(long bytes, CancellationToken cancellationToken = default)
    {
        using var channel = GrpcChannel.ForAddress(RightNeighbour().Endpoint);
        return await GrpcStreamProbe.MeasureAsync(channel.CreateCallInvoker(), bytes, options.SegmentBytes, cancellationToken);
    }

    RingNeighbour RightNeighbour()
    {
        lock (gate) return link?.Right ?? throw new InvalidOperationException("the bandwidth probes need a ring of at least two workers");
    }

    public async ValueTask DisposeAsync()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            link?.Retire("the worker is shutting down");
        }
        listener.Dispose();
        sender.Dispose();
        receiver.Dispose();
        if (server != null)
        {
            await server.StopAsync(CancellationToken.None);
            await server.DisposeAsync();
        }
    }
}
