using System.Buffers;
using System.Net;
using CondenseCluster.Shared.Runtime;
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
    IRingLink[] links = [];
    IRingCollective? collective;
    (int Rank, int Size) place;
    string host = ""; // this rank's advertised host, in the current ring
    long sentByRetired, referencedByRetired;
    bool disposed;

    public DataPlaneNode(DataPlaneOptions? options = null)
    {
        this.options = options ?? new DataPlaneOptions();
        this.options.Validate();
        listener = new RingListener(IPAddress.Parse(this.options.ListenAddress), this.options.RingPort, this.options.SegmentBytes, this.options.HandshakeTimeout);
        connector = new RingConnector(this.options);
        if (connector.SharedMemory) SharedMemoryFile.RemoveOrphans(this.options.SharedMemoryFolder);
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
        builder.Services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
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
    /// Makes this node rank <paramref name="rank"/> of the job's ranks <paramref name="endpoints"/> (their gRPC
    /// endpoints, in rank order) and starts connecting to its right neighbours: one ring, or the hierarchical form
    /// where <paramref name="topology"/> and the hosts allow (<see cref="RingLayout"/>). An all-reduce still running
    /// on the previous ring is aborted. <paramref name="generation"/> must grow with every new ring, on every member
    /// alike; every member passes the same topology. Returns the layout taken.
    /// </summary>
    public RingLayout ConfigureRing(int rank, IReadOnlyList<string> endpoints, long generation, RingTopology topology = RingTopology.Auto)
    {
        var layout = RingLayout.Of(endpoints, rank, topology);
        ConfigureRing(rank, endpoints.Count, layout, generation);
        return layout;
    }

    /// <summary>
    /// Makes this node rank <paramref name="rank"/> of a job of <paramref name="size"/> ranks, in the rings of
    /// <paramref name="layout"/> (as a coordinator computes it for every rank: <see cref="RingLayout.All"/>).
    /// </summary>
    public void ConfigureRing(int rank, int size, RingLayout layout, long generation)
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (generation <= this.generation)
                throw new ArgumentException($"ring generation {generation} is not newer than the current {this.generation}", nameof(generation));
            this.generation = generation;
            foreach (var link in links) link.Retire("the ring was reconfigured");
            sentByRetired += collective?.BytesSent ?? 0;
            referencedByRetired += links.Sum(l => l.BytesReferenced);
            RingPlace[] rings = [.. new[] { layout.Ring, layout.Across }.OfType<RingPlace>().Where(r => r.Size > 1)];
            var accepting = listener.Expect(generation, [.. rings.Select(r => (r.Digest, r.Size, r.Rank))]);
            links = [.. rings.Select((r, i) => new SocketRingLink(generation, r, accepting[i], connector, lost => NeighbourLost?.Invoke(generation, lost)))];
            RingAllReduce Ring(int i, RingPlace ring) => new(ring.Rank, ring.Size, i < links.Length ? links[i] : null, options, sender, receiver);
            collective = layout.Hierarchical ? new HierarchicalAllReduce(Ring(0, layout.Ring), Ring(1, layout.Across!), layout) : Ring(0, layout.Ring);
            (place, host) = ((rank, size), RingLayout.HostOf(layout.Ring.Self));
        }
    }

    /// <summary>
    /// A right neighbour's connection of ring generation (the first argument) ended before this node ended that
    /// generation: the neighbour's process or host is gone, or its all-reduce failed. Raised on a ring thread, also
    /// while no all-reduce runs, so that the owner can report the loss before its next step would find it.
    /// </summary>
    public event Action<long, AllReduceException>? NeighbourLost;

    public int Rank => Configured().Place.Rank;

    public int Size => Configured().Place.Size;

    /// <summary>
    /// How the connections to the right neighbours travel ("tcp", "unix"; "connecting" before one is open; the ring
    /// within the host first, then the one across hosts), or null on a ring of one.
    /// </summary>
    public string? Transport
    {
        get { lock (gate) return links.Length == 0 ? null : string.Join('+', links.Select(l => l.Transport)); }
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
        Configured().Collective.AllReduceAsync(buffer, operationId, precision, cancellationToken);

    /// <summary>In shared memory where ranks on this host may use it (<see cref="RingTransportKind.Auto"/>) and it has room; on the heap otherwise.</summary>
    public IMemoryOwner<float> CreateBuffer(int length) =>
        (connector.SharedMemory ? SharedFloatBuffer.TryCreate(options.SharedMemoryFolder, length) : null) ?? (IMemoryOwner<float>)new FloatArray(length);

    (IRingCollective Collective, (int Rank, int Size) Place) Configured()
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return collective is null ? throw new InvalidOperationException("configure the ring before the first all-reduce") : (collective, place);
        }
    }

    /// <summary>Payload bytes this node has sent through its rings (every generation).</summary>
    public long BytesSent
    {
        get { lock (gate) return sentByRetired + (collective?.BytesSent ?? 0); }
    }

    /// <summary>Of <see cref="BytesSent"/>, those a neighbour on this host read straight from a buffer of <see cref="CreateBuffer"/>.</summary>
    public long BytesReferenced
    {
        get { lock (gate) return referencedByRetired + links.Sum(l => l.BytesReferenced); }
    }

    /// <summary>Aborts the all-reduce in flight, if any, and ends the current ring generation.</summary>
    public void Abort()
    {
        lock (gate)
            foreach (var link in links) link.Abort("the owner aborted the ring");
    }

    /// <summary>Bytes per second of a raw push of <paramref name="bytes"/> to the right neighbour's ring listener, over the transport the ring takes.</summary>
    public Task<double> MeasureSocketBandwidthAsync(long bytes, CancellationToken cancellationToken = default)
    {
        var (right, advertised) = RightNeighbour();
        return Task.Factory.StartNew(() => connector.Probe(right, bytes, advertised, cancellationToken), cancellationToken,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Bytes per second of a raw gRPC client stream of <paramref name="bytes"/> to the right neighbour's endpoint, in messages of one segment.</summary>
    public async Task<double> MeasureGrpcStreamBandwidthAsync(long bytes, CancellationToken cancellationToken = default)
    {
        using var channel = GrpcChannel.ForAddress(RightNeighbour().Right.Endpoint);
        return await GrpcStreamProbe.MeasureAsync(channel.CreateCallInvoker(), bytes, options.SegmentBytes, cancellationToken);
    }

    (RingNeighbour Right, string Host) RightNeighbour()
    {
        lock (gate) return links.Length > 0 ? (links[0].Right, host) : throw new InvalidOperationException("the bandwidth probes need a ring of at least two workers");
    }

    public async ValueTask DisposeAsync()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            foreach (var link in links) link.Retire("the worker is shutting down");
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
