using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Where a rank's left neighbour connects (DESIGN.md §2): a TCP port and, on Linux, an abstract Unix socket for ranks on
/// the same host. Each connection starts with a <see cref="RingHello"/>. A ring connection is accepted only for a
/// ring this rank expects (<see cref="Expect"/>: same generation, members and order, from the rank before it; a rank
/// of a hierarchical layout expects two rings of one generation, told apart by their members); one for
/// a newer generation waits until this rank is configured for it (a left neighbour may be configured first), one for an
/// older or another ring is refused with the reason. Garbage and silence are closed; they end no ring.
/// </summary>
sealed class RingListener : IDisposable
{
    sealed record Expectation(long Generation, ulong Digest, int Size, int Rank)
    {
        public TaskCompletionSource<Socket> Left { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    readonly object gate = new();
    readonly Socket tcp;
    readonly Socket? unix;
    readonly int segmentBytes;
    readonly TimeSpan handshakeTimeout;
    readonly List<(RingHello Hello, Socket Socket)> early = []; // connections of generations not yet expected
    const int MaxEarly = 64;
    readonly List<Expectation> current = []; // the rings of the newest generation expected so far
    long newest = -1;
    bool disposed;

    public RingListener(IPAddress address, int port, int segmentBytes, TimeSpan handshakeTimeout)
    {
        (this.segmentBytes, this.handshakeTimeout) = (segmentBytes, handshakeTimeout);
        tcp = Listen(new IPEndPoint(address, port));
        TcpPort = ((IPEndPoint)tcp.LocalEndPoint!).Port;
        if (RingHost.UnixSockets)
        {
            UnixName = $"\0condensecluster-ring-{Environment.ProcessId}-{Guid.NewGuid():N}";
            unix = Listen(new UnixDomainSocketEndPoint(UnixName));
        }
        foreach (var listening in new[] { tcp, unix }.OfType<Socket>())
            new Thread(() => AcceptAll(listening)) { Name = "ring-accept", IsBackground = true }.Start();
    }

    public int TcpPort { get; }

    /// <summary>The abstract socket's name (starting with a NUL character), or null without one.</summary>
    public string? UnixName { get; }

    /// <summary>
    /// The rings this rank is a member of in generation <paramref name="generation"/>, newer than any before (one, or
    /// two for a hierarchical layout): for each, its members' digest, its size and this rank's place. Completes, for
    /// each, with the connection from its left neighbour. Ends the waits of the older generation and refuses its
    /// connections.
    /// </summary>
    public Task<Socket>[] Expect(long generation, IReadOnlyList<(ulong Digest, int Size, int Rank)> rings)
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (generation <= newest) throw new ArgumentException($"ring generation {generation} is not newer than {newest}", nameof(generation));
            foreach (var old in current) old.Left.TrySetCanceled();
            current.Clear();
            current.AddRange(rings.Select(r => new Expectation(generation, r.Digest, r.Size, r.Rank)));
            newest = generation;
            foreach (var (hello, socket) in early.Where(e => e.Hello.Generation <= generation).ToList())
            {
                early.Remove((hello, socket));
                if (hello.Generation == generation) Offer(hello, socket);
                else Refuse(socket, RingVerdict.Stale);
            }
            return [.. current.Select(e => e.Left.Task)];
        }
    }

    void AcceptAll(Socket listening)
    {
        while (true)
        {
            Socket accepted;
            try { accepted = listening.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; } // disposed
            // A thread each: a silent or slow peer must not hold up the neighbour's handshake behind it.
            new Thread(() => Handshake(accepted)) { Name = "ring-handshake", IsBackground = true }.Start();
        }
    }

    void Handshake(Socket socket)
    {
        try
        {
            socket.ReceiveTimeout = (int)handshakeTimeout.TotalMilliseconds;
            Span<byte> bytes = stackalloc byte[RingHello.Bytes];
            if (RingSockets.Receive(socket, bytes) < bytes.Length) throw new InvalidDataException("the connection ended inside its handshake");
            var hello = RingHello.Read(bytes);
            if (hello.Kind == RingConnectionKind.Probe) Drain(socket);
            else Offer(hello, socket);
        }
        catch (Exception e) when (e is InvalidDataException or SocketException or ObjectDisposedException)
        {
            socket.Dispose(); // not a peer of this ring, or it went away: nothing of a ring depends on it
        }
    }

    void Offer(RingHello hello, Socket socket)
    {
        lock (gate)
        {
            if (disposed) Refuse(socket, RingVerdict.Closing);
            else if (hello.Generation < newest) Refuse(socket, RingVerdict.Stale);
            else if (hello.Generation == newest) Match(current.Find(e => e.Digest == hello.Digest), hello, socket);
            else if (early.Count >= MaxEarly) Refuse(socket, RingVerdict.Duplicate);
            else early.Add((hello, socket));
        }
    }

    // Callers hold the gate.
    void Match(Expectation? expected, RingHello hello, Socket socket)
    {
        if (expected is null || hello.Size != expected.Size || hello.ReceiverRank != expected.Rank) Refuse(socket, RingVerdict.Foreign);
        else if (expected.Left.Task.IsCompleted) Refuse(socket, RingVerdict.Duplicate);
        else
        {
            Answer(socket, RingVerdict.Accepted);
            socket.ReceiveTimeout = 0;
            RingSockets.Tune(socket, segmentBytes);
            if (!expected.Left.TrySetResult(socket)) socket.Dispose();
        }
    }

    void Refuse(Socket socket, RingVerdict verdict)
    {
        Answer(socket, verdict);
        socket.Dispose();
    }

    void Answer(Socket socket, RingVerdict verdict)
    {
        Span<byte> bytes = stackalloc byte[RingWelcome.Bytes];
        new RingWelcome(verdict, newest).Write(bytes);
        try { RingSockets.SendAll(socket, bytes); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { } // it left already
    }

    /// <summary>A probe: a count, then that many bytes, which are read and dropped; the count goes back.</summary>
    void Drain(Socket socket)
    {
        using (socket)
        {
            Span<byte> count = stackalloc byte[sizeof(long)];
            if (RingSockets.Receive(socket, count) < count.Length) return;
            socket.ReceiveTimeout = 0;
            long left = BinaryPrimitives.ReadInt64LittleEndian(count);
            var scratch = new byte[Math.Max(segmentBytes, 1 << 16)];
            while (left > 0)
            {
                int n = RingSockets.Receive(socket, scratch.AsSpan(0, (int)Math.Min(scratch.Length, left)));
                if (n == 0) return;
                left -= n;
            }
            RingSockets.SendAll(socket, count);
        }
    }

    Socket Listen(EndPoint endpoint)
    {
        var socket = RingSockets.Open(endpoint);
        try
        {
            socket.Bind(endpoint);
            // Accepted connections inherit the buffers, and TCP fixes its window scale when the connection opens.
            RingSockets.Tune(socket, segmentBytes);
            socket.Listen(64);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            foreach (var expected in current) expected.Left.TrySetCanceled();
            foreach (var waiting in early) Refuse(waiting.Socket, RingVerdict.Closing);
            early.Clear();
        }
        tcp.Dispose();
        unix?.Dispose();
    }
}
