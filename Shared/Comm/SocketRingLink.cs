using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// One ring generation over sockets (DESIGN.md §2): one connection to the right neighbour, opened when the generation
/// is configured, and one from the left neighbour, which this rank's <see cref="RingListener"/> accepts. Each frame is
/// its fixed header, then the raw payload, written from and read into the caller's buffers; between ranks on one host
/// the payloads go through a shared-memory file instead (<see cref="SharedPayloadRing"/>) and the socket carries the
/// headers, and a payload that lies in the sender's <see cref="SharedFloatBuffer"/> stays there: the receiver reads it
/// where it lies. When the generation ends both connections close: a neighbour blocked on either one fails at once, so
/// a failure travels round the ring.
/// </summary>
sealed class SocketRingLink : IRingLink
{
    /// <summary>Payloads up to this size go out in one write with their header.</summary>
    const int SmallPayloadBytes = 4096;
    /// <summary>Where a payload lies in the sender's buffer, in the shared ring in its place: the buffer's id (i32, then 4 zero bytes) and the byte offset (i64).</summary>
    const int ReferenceBytes = 16;

    readonly object gate = new();
    readonly CancellationTokenSource aborted = new(), ended = new();
    readonly Task<(Socket Socket, string Transport)> connecting;
    readonly Task<Socket> accepting;
    bool busy;
    (AllReduceFailure Reason, string Why)? end;
    volatile AllReduceException? broken; // why the right neighbour's connection ended, when that ended the generation
    readonly Action<AllReduceException> neighbourLost;
    // Payloads through shared memory, each way: mapped while an all-reduce may use them, unmapped once the generation
    // ended and none runs (a thread still copying must never find its memory gone).
    SharedPayloadRing? outgoing, incoming;
    bool routeRead; // the left neighbour's payload route, read before its first frame
    readonly string sharedMemoryFolder;
    long bytesReferenced;
    bool referencesUnread; // sent payloads that the right neighbour reads from this rank's buffer, since the last wait for them
    RingFrame lastFrame; // received
    int leftPid; // whose buffers the left neighbour's references name
    readonly Dictionary<int, SharedFloatBuffer> leftBuffers = []; // mapped by the receiving half, released with the shared rings

    /// <param name="accepting">the connection from the left neighbour, as this rank's listener accepts it (<see cref="RingListener.Expect"/>)</param>
    /// <param name="neighbourLost">called once, on the watching thread, when the right neighbour's connection ends before this generation did</param>
    public SocketRingLink(long generation, RingPlace place, Task<Socket> accepting, RingConnector connector, Action<AllReduceException> neighbourLost)
    {
        this.neighbourLost = neighbourLost;
        sharedMemoryFolder = connector.SharedMemoryFolder;
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
        SharedPayloadRing? shared = null;
        try
        {
            var (connected, transport) = connector.ConnectRing(Right, hello, host, ended.Token);
            socket = connected;
            try
            {
                if (transport == "unix" && connector.SharedMemory) shared = SharedPayloadRing.TryCreate(connector.SharedMemoryFolder, connector.SegmentBytes);
                RingSockets.SendAll(socket, RingPayloadRoute.Encode(shared?.Path));
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                shared?.Dispose();
                socket.Dispose();
                throw new AllReduceException(AllReduceFailure.StreamBroken, $"{Right} closed the connection during the handshake", e);
            }
            lock (gate)
                if (end is null) outgoing = shared;
            opened.SetResult((socket, shared is null ? transport : "shm"));
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
                if (outgoing is null) shared?.Dispose();
                return;
            }
        // The neighbour writes nothing but wake-ups for a sender waiting for room in the shared ring.
        Span<byte> one = stackalloc byte[1];
        try
        {
            while (RingSockets.Receive(socket, one) == 1 && one[0] == SharedPayloadRing.RoomMade && shared is not null)
                shared.RoomWasMade();
        }
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

    public long BytesReferenced => Interlocked.Read(ref bytesReferenced);

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
            else if (end is not null) ReleaseSharedMemory();
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
            if (outgoing is not null && SharedFloatBuffer.TryLocate(payload, out int id, out long offset))
            {
                Span<byte> reference = stackalloc byte[ReferenceBytes];
                BinaryPrimitives.WriteInt32LittleEndian(reference, id);
                BinaryPrimitives.WriteInt64LittleEndian(reference[8..], offset);
                outgoing.Write(reference, ended.Token);
                (frame with { InSendersBuffer = true }).Write(bytes);
                RingSockets.SendAll(socket, bytes[..RingFrame.HeaderBytes]);
                referencesUnread = true;
                Interlocked.Add(ref bytesReferenced, payload.Length);
            }
            else if (outgoing is not null)
            {
                outgoing.Write(payload, ended.Token);
                RingSockets.SendAll(socket, bytes[..RingFrame.HeaderBytes]);
            }
            else if (payload.Length <= SmallPayloadBytes)
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
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            throw broken ?? new AllReduceException(AllReduceFailure.StreamBroken, $"sending to {Right}: {e.Message}", e);
        }
    }

    public void AwaitPayloadsRead()
    {
        if (!referencesUnread || outgoing is null) return;
        try { outgoing.Drain(ended.Token); }
        catch (OperationCanceledException e)
        {
            throw broken ?? new AllReduceException(AllReduceFailure.StreamBroken, $"waiting for {Right} to read this rank's buffer: {e.Message}", e);
        }
        referencesUnread = false;
    }

    public RingFrame ReceiveFrame(CancellationToken cancellationToken)
    {
        if (!routeRead) ReadRoute(cancellationToken);
        Span<byte> header = stackalloc byte[RingFrame.HeaderBytes];
        int received = ReceiveFromLeft(header, cancellationToken);
        if (received == 0) throw new AllReduceException(AllReduceFailure.StreamBroken, $"{Left} closed its connection");
        if (received < header.Length)
            throw new AllReduceException(AllReduceFailure.StreamBroken, $"the connection from {Left} ended inside a frame header ({received} of {header.Length} bytes)");
        try { return lastFrame = RingFrame.Read(header); }
        catch (InvalidDataException e) { throw new AllReduceException(AllReduceFailure.Malformed, $"from {Left}: {e.Message}", e); }
    }

    /// <summary>Where the left neighbour's payloads travel, as it said after the welcome; maps its shared ring.</summary>
    void ReadRoute(CancellationToken cancellationToken)
    {
        Span<byte> header = stackalloc byte[RingPayloadRoute.HeaderBytes];
        ReceiveWhole(header, "its payload route", cancellationToken);
        try
        {
            int length = RingPayloadRoute.PathBytes(header);
            if (length > 0)
            {
                Span<byte> path = stackalloc byte[length];
                ReceiveWhole(path, "its payload route", cancellationToken);
                var shared = SharedPayloadRing.Open(Encoding.UTF8.GetString(path), sharedMemoryFolder);
                leftPid = SharedMemoryFile.OwnerPid(shared.Path);
                lock (gate) incoming = shared; // an all-reduce runs: the generation's end releases it afterwards
            }
        }
        catch (InvalidDataException e) { throw new AllReduceException(AllReduceFailure.Malformed, $"from {Left}: {e.Message}", e); }
        routeRead = true;
    }

    public void ReceivePayload(Span<byte> into, CancellationToken cancellationToken)
    {
        if (lastFrame.InSendersBuffer)
        {
            InLeftsBuffer(into.Length).CopyTo(into);
            Release(incoming!, ReferenceBytes, cancellationToken);
            return;
        }
        if (incoming is null)
        {
            ReceiveWhole(into, "a frame's payload", cancellationToken);
            return;
        }
        SharedPayload(incoming, into.Length).CopyTo(into);
        Release(incoming, into.Length, cancellationToken);
    }

    public void ReceiveAdding(Span<float> target, Span<float> scratch, CancellationToken cancellationToken)
    {
        if (lastFrame.InSendersBuffer)
        {
            FloatPayload.AddTo(MemoryMarshal.Cast<byte, float>(InLeftsBuffer(target.Length * sizeof(float))), target);
            Release(incoming!, ReferenceBytes, cancellationToken);
            return;
        }
        if (incoming is null)
        {
            var values = scratch[..target.Length];
            ReceiveWhole(MemoryMarshal.AsBytes(values), "a frame's payload", cancellationToken);
            FloatPayload.AddTo(values, target);
            return;
        }
        FloatPayload.AddTo(MemoryMarshal.Cast<byte, float>(SharedPayload(incoming, target.Length * sizeof(float))), target);
        Release(incoming, target.Length * sizeof(float), cancellationToken);
    }

    /// <summary>The payload of the frame last received where it lies in the left neighbour's buffer, as the shared ring says; valid until released.</summary>
    ReadOnlySpan<byte> InLeftsBuffer(int length)
    {
        try
        {
            if (incoming is null || lastFrame.Precision != WirePrecision.Float32)
                throw new InvalidDataException($"a frame of {lastFrame.Precision} values in the sender's buffer{(incoming is null ? " on a connection without shared memory" : "")}");
            var reference = incoming.Next(ReferenceBytes);
            int id = BinaryPrimitives.ReadInt32LittleEndian(reference);
            if (!leftBuffers.TryGetValue(id, out var buffer))
                leftBuffers[id] = buffer = SharedFloatBuffer.OpenNeighbours(sharedMemoryFolder, leftPid, id);
            return buffer.Read(BinaryPrimitives.ReadInt64LittleEndian(reference[8..]), length);
        }
        catch (InvalidDataException e) { throw new AllReduceException(AllReduceFailure.Malformed, $"from {Left}: {e.Message}", e); }
    }

    /// <summary>The next payload where it lies in the shared ring.</summary>
    ReadOnlySpan<byte> SharedPayload(SharedPayloadRing shared, int length)
    {
        try { return shared.Next(length); }
        catch (InvalidDataException e) { throw new AllReduceException(AllReduceFailure.Malformed, $"from {Left}: {e.Message}", e); }
    }

    /// <summary>Frees the room of the payload used, and wakes the sender if it waits for room.</summary>
    void Release(SharedPayloadRing shared, int length, CancellationToken cancellationToken)
    {
        if (!shared.Release(length)) return;
        var socket = Opened(accepting, cancellationToken);
        try { RingSockets.SendAll(socket, [SharedPayloadRing.RoomMade]); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw broken ?? new AllReduceException(AllReduceFailure.StreamBroken, $"waking {Left}: {e.Message}", e);
        }
    }

    void ReceiveWhole(Span<byte> into, string what, CancellationToken cancellationToken)
    {
        int received = ReceiveFromLeft(into, cancellationToken);
        if (received < into.Length)
            throw new AllReduceException(AllReduceFailure.StreamBroken, $"the connection from {Left} ended inside {what} ({received} of {into.Length} bytes)");
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
        outgoing?.RoomWasMade(); // a sender waiting for room sees the end
        if (!busy) ReleaseSharedMemory();
    }

    // Callers hold the gate; no all-reduce runs.
    void ReleaseSharedMemory()
    {
        outgoing?.Dispose();
        incoming?.Dispose();
        (outgoing, incoming) = (null, null);
        foreach (var buffer in leftBuffers.Values) buffer.Dispose();
        leftBuffers.Clear();
    }
}
