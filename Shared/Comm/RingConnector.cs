using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;
using Grpc.Net.Client;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Opens a rank's connection to its right neighbour (DESIGN.md §2): asks the neighbour's data endpoint over gRPC where
/// its ring listener is, connects over its abstract Unix socket when both are advertised at the same host and share a
/// machine (<see cref="RingHost"/>), else over TCP, and introduces itself with a <see cref="RingHello"/>. Blocking: it
/// runs on a thread of its own.
/// </summary>
sealed class RingConnector(DataPlaneOptions options)
{
    /// <summary>Whether a ring connection over a Unix socket sends its payloads through shared memory (<see cref="SharedPayloadRing"/>).</summary>
    public bool SharedMemory => options.Transport == RingTransportKind.Auto;

    public int SegmentBytes => options.SegmentBytes;

    public string SharedMemoryFolder => options.SharedMemoryFolder;

    /// <summary>A ring connection for <paramref name="hello"/>, once the neighbour has accepted it (it may first wait to be configured for that generation).</summary>
    /// <param name="host">the host this rank is advertised at</param>
    public (Socket Socket, string Transport) ConnectRing(RingNeighbour right, RingHello hello, string host, CancellationToken cancellationToken)
    {
        var (socket, transport) = Open(right, hello, host, cancellationToken);
        using var cancel = cancellationToken.Register(socket.Dispose);
        try
        {
            // The welcome waits until the neighbour is configured for this generation: as long as an all-reduce may wait.
            socket.ReceiveTimeout = (int)options.ProgressTimeout.TotalMilliseconds;
            Span<byte> answer = stackalloc byte[RingWelcome.Bytes];
            if (RingSockets.Receive(socket, answer) < answer.Length)
                throw new AllReduceException(AllReduceFailure.StreamBroken, $"{right} closed the connection during the handshake");
            var welcome = RingWelcome.Read(answer);
            if (welcome.Verdict != RingVerdict.Accepted)
                // A neighbour that is shutting down is as good as gone; any other refusal is a disagreement about the ring.
                throw new AllReduceException(welcome.Verdict == RingVerdict.Closing ? AllReduceFailure.PeerUnreachable : AllReduceFailure.Refused,
                    $"{right} refused this rank's connection of generation {hello.Generation}: {welcome.Explain(hello.Generation)}");
            socket.ReceiveTimeout = 0;
            return (socket, transport);
        }
        catch (Exception e) when (e is not AllReduceException)
        {
            socket.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            throw e is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock }
                ? new AllReduceException(AllReduceFailure.Timeout, $"{right} did not answer the handshake within {options.ProgressTimeout.TotalSeconds:0.#} s", e)
                : new AllReduceException(AllReduceFailure.Refused, $"the handshake with {right} failed: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Bytes per second of <paramref name="bytes"/> pushed raw to the right neighbour's listener over the transport a ring connection would take.</summary>
    public double Probe(RingNeighbour right, long bytes, string host, CancellationToken cancellationToken)
    {
        var (socket, _) = Open(right, RingHello.Probe, host, cancellationToken);
        using (socket)
        using (cancellationToken.Register(socket.Dispose))
        {
            var watch = Stopwatch.StartNew();
            Span<byte> count = stackalloc byte[sizeof(long)];
            BinaryPrimitives.WriteInt64LittleEndian(count, bytes);
            RingSockets.SendAll(socket, count);
            var payload = new byte[options.SegmentBytes];
            for (long sent = 0; sent < bytes; sent += payload.Length)
                RingSockets.SendAll(socket, payload.AsSpan(0, (int)Math.Min(payload.Length, bytes - sent)));
            if (RingSockets.Receive(socket, count) < count.Length || BinaryPrimitives.ReadInt64LittleEndian(count) != bytes)
                throw new IOException($"{right} did not confirm the {bytes} probe bytes");
            return bytes / watch.Elapsed.TotalSeconds;
        }
    }

    (Socket Socket, string Transport) Open(RingNeighbour right, RingHello hello, string host, CancellationToken cancellationToken)
    {
        var address = Describe(right, cancellationToken);
        // The same advertised host too: ranks given addresses of their own (several 127.0.0.x, simulated hosts) talk TCP.
        bool unix = options.Transport != RingTransportKind.Tcp && RingHost.UnixSockets && address.UnixName.Length > 0 && address.HostKey == RingHost.Key
            && RingLayout.HostOf(right.Endpoint) == host;
        var endpoint = unix ? new UnixDomainSocketEndPoint(address.UnixName) : (EndPoint)new IPEndPoint(Resolve(right), address.TcpPort);
        string transport = unix ? "unix" : "tcp";
        var socket = RingSockets.Open(endpoint);
        try
        {
            using (cancellationToken.Register(socket.Dispose))
            {
                RingSockets.Tune(socket, options.SegmentBytes);
                socket.Connect(endpoint);
                Span<byte> bytes = stackalloc byte[RingHello.Bytes];
                hello.Write(bytes);
                RingSockets.SendAll(socket, bytes);
            }
            return (socket, transport);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            socket.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            throw new AllReduceException(AllReduceFailure.PeerUnreachable, $"connecting to {right}'s ring listener ({transport} {endpoint}): {e.Message}", e);
        }
    }

    RingAddress Describe(RingNeighbour right, CancellationToken cancellationToken)
    {
        try
        {
            using var channel = GrpcChannel.ForAddress(right.Endpoint);
            return new RingSetup.RingSetupClient(channel)
                .DescribeAsync(new DescribeRequest(), deadline: DateTime.UtcNow + options.HandshakeTimeout, cancellationToken: cancellationToken)
                .ResponseAsync.GetAwaiter().GetResult();
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AllReduceException(AllReduceFailure.PeerUnreachable, $"asking {right} for its ring listener: {e.Status.Detail}", e);
        }
    }

    /// <summary>The address of the neighbour's data endpoint's host, IPv4 first (the listeners bind IPv4 addresses).</summary>
    static IPAddress Resolve(RingNeighbour right)
    {
        string host = new Uri(right.Endpoint).Host;
        if (IPAddress.TryParse(host, out var address)) return address;
        try
        {
            var addresses = Dns.GetHostAddresses(host);
            return addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.First();
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException)
        {
            throw new AllReduceException(AllReduceFailure.PeerUnreachable, $"{right}: the host name '{host}' does not resolve: {e.Message}", e);
        }
    }
}
