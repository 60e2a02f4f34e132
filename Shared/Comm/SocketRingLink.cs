using System.Net.Sockets;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// One ring generation over sockets (DESIGN.md §2): one connection to the right neighbour, opened when the generation
/// is configured, and one from the left neighbour, which this rank's <see cref="RingListener"/> accepts. Each frame is
/// its fixed header, then the raw payload, written from and read into the caller's buffers. When the generation ends
/// both connections close: a neighbour blocked on either one fails at once, so a failure travels round the ring.
/// </summary>
sealed class SocketRingLink : IRingLink
{
    /// <summary>Payloads up to this size go out in one write with their header.</summary>
    const int SmallPayloadBytes = 4096;

    readonly object gate = new();
    readonly CancellationTokenSource aborted = new(), ended = new();
    readonly Task<(Socket Socket, string Transport)> connecting;
    readonly Task<Socket> accepting;
    bool busy;
    (AllReduceFailure Reason, string Why)? end;
    volatile AllReduceException? broken; // why the right neighbour's connection ended, when that ended the generation
    readonly Action<AllReduceException> neighbourLost;

    /// <param name="accepting">the connection from the left neighbour, as this rank's listener accepts it (<see cref="RingListener.Expect"/>)</param>
    /// <param name="neighbourLost">called once, on the watching thread, when the right neighbour's connection ends before this generation did</param>
    public SocketRingLink(long generation, RingPlace place, Task<Socket> accepting, RingConnector connector, Action<AllReduceException> neighbourLost)
    {
        this.neighbourLost = neighbourLost;
        int size = place.Size;
        (Generation, Left, Right, this.accepting) =
            (generation, new RingNeighbour((place.Rank + size - 1) % size, place.Left), new RingNeighbour((place.Rank + 1) % size, place.Right), accepting);
        var hello = new RingHello(RingConnectionKind.Ring, generation, place.Digest, size, place.Rank);
        string host = RingLayout.HostOf(place.Self);
        var opened = new TaskCompletionSource<(Socket, string)>(TaskCreationOptions.RunContinuationsAsynchronously);
        connecting = opened.Task;
        new Thread(() => ConnectAndWatch(connector, hello, host, opened)) { Name = "ring-connect", IsBackground = true }.Start();
        // A connection that arrives after the generation ended is closed.
        _ = accepting.ContinueWith(t => { if (t.IsCompletedSuccessfully && ended.IsCancellationRequested) t.Result.Dispose(); }, TaskScheduler.Default);
    }

    /// <summary>
    /// Opens the connection to the right neighbour, then watches it: the neighbour sends nothing after its welcome, so a
    /// read returns only when it closes or breaks the connection. That ends the generation at once, whether an
    /// all-reduce is sending to it or not (one may be waiting for its left neighbour), and so reaches the rest of the ring;
    /// the owner hears of it even while no all-reduce runs.
    /// </summary>
    void ConnectAndWatch(RingConnector connector, RingHello hello, string host, TaskCompletionSource<(Socket, string)> opened)
    {
        Socket socket;
        try
        {
            var connection = connector.ConnectRing(Right, hello, host, ended.Token);
            socket = connection.Socket;
            opened.SetResult(connection);
        }
        catch (Exception e)
        {
            opened.SetException(e);
            return;
        }
        lock (gate)
            if (end is not null)
            {
                socket.Dispose();
                return;
            }
        Span<byte> one = stackalloc byte[1];
        try { RingSockets.Receive(socket, one); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        AllReduceException lost;
        lock (gate)
        {
            if (end is not null) return;
            broken = lost = new AllReduceException(AllReduceFailure.StreamBroken, $"{Right} closed its connection");
            Close(AllReduceFailure.StreamBroken, lost.Detail, cut: true);
        }
        neighbourLost(lost);
    }

    public long Generation { get; }
    public RingNeighbour Left { get; }
    public RingNeighbour Right { get; }

    public string Transport => connecting.IsCompletedSuccessfully ? connecting.Result.Transport : "connecting";

    public CancellationToken BeginOperation()
    {
        lock (gate)
        {
            if (end is var (reason, why)) throw new AllReduceException(reason, $"ring generation {Generation} has ended ({why}); configure a new ring");
            if (busy) throw new InvalidOperationException("an all-reduce is already running on this ring");
            busy = true;
            return aborted.Token;
        }
    }

    public void EndOperation(bool succeeded)
    {
        lock (gate)
        {
            busy = false;
            if (!succeeded) Close(AllReduceFailure.Aborted, "an all-reduce failed on this generation", cut: true);
        }
    }

    public void Abort(string why)
    {
        lock (gate)
        {
            aborted.Cancel(); // first: whoever sees a connection fail now knows it was cut on purpose
            Close(AllReduceFailure.Aborted, why, cut: true);
        }
    }

    public void Cut(string why)
    {
        lock (gate) Close(AllReduceFailure.Aborted, why, cut: true);
    }

    public void Retire(string why)
    {
        lock (gate)
        {
            if (busy) aborted.Cancel();
            Close(AllReduceFailure.Aborted, why, cut: busy);
        }
    }

    public void Send(in RingFrame frame, ReadOnlySpan<byte> payload, CancellationToken cancellationToken)
    {
        var socket = Opened(connecting, cancellationToken).Socket;
        Span<byte> bytes = stackalloc byte[RingFrame.HeaderBytes + SmallPayloadBytes];
        frame.Write(bytes);
        try
        {
            if (payload.Length <= SmallPayloadBytes)
            {
                payload.CopyTo(bytes[RingFrame.HeaderBytes..]);
                RingSockets.SendAll(socket, bytes[..(RingFrame.HeaderBytes + payload.Length)]);
            }
            else
            {
                RingSockets.SendAll(socket, bytes[..RingFrame.HeaderBytes]);
                RingSockets.SendAll(socket, payload);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw broken ?? new AllReduceException(AllReduceFailure.StreamBroken, $"sending to {Right}: {e.Message}", e);
        }
    }

    public RingFrame ReceiveFrame(CancellationToken cancellationToken)
    {
        Span<byte> header = stackalloc byte[RingFrame.HeaderBytes];
        int received = ReceiveFromLeft(header, cancellationToken);
        if (received == 0) throw new AllReduceException(AllReduceFailure.StreamBroken, $"{Left} closed its connection");
        if (received < header.Length)
            throw new AllReduceException(AllReduceFailure.StreamBroken, $"the connection from {Left} ended inside a frame header ({received} of {header.Length} bytes)");
        try { return RingFrame.Read(header); }
        catch (InvalidDataException e) { throw new AllReduceException(AllReduceFailure.Malformed, $"from {Left}: {e.Message}", e); }
    }

    public void ReceivePayload(Span<byte> into, CancellationToken cancellationToken)
    {
        int received = ReceiveFromLeft(into, cancellationToken);
        if (received < into.Length)
            throw new AllReduceException(AllReduceFailure.StreamBroken, $"the connection from {Left} ended inside a frame's payload ({received} of {into.Length} bytes)");
    }

    int ReceiveFromLeft(Span<byte> into, CancellationToken cancellationToken)
    {
        var socket = Opened(accepting, cancellationToken);
        try { return RingSockets.Receive(socket, into); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw broken ?? new AllReduceException(AllReduceFailure.StreamBroken, $"receiving from {Left}: {e.Message}", e);
        }
    }

    /// <summary>Waits for a connection to open, until the generation ends; <see cref="Close"/> closes it with the generation.</summary>
    T Opened<T>(Task<T> opening, CancellationToken cancellationToken)
    {
        if (opening.IsCompleted) return opening.GetAwaiter().GetResult();
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, ended.Token);
        return opening.WaitAsync(either.Token).GetAwaiter().GetResult();
    }

    // Callers hold the gate.
    void Close(AllReduceFailure reason, string why, bool cut)
    {
        end ??= (reason, why);
        ended.Cancel(); // first: a connection that opens after this is closed by its continuation
        var sockets = new[] { connecting.IsCompletedSuccessfully ? connecting.Result.Socket : null, accepting.IsCompletedSuccessfully ? accepting.Result : null };
        foreach (var socket in sockets.OfType<Socket>())
            if (cut) RingSockets.Cut(socket);
            else socket.Dispose(); // every frame was read and written: the kernel still delivers what it holds
    }
}
