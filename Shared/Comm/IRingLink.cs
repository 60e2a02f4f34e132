namespace CondenseCluster.Shared.Comm;

/// <summary>A ring member as the messages name it.</summary>
public readonly record struct RingNeighbour(int Rank, string Endpoint)
{
    public override string ToString() => $"rank {Rank} ({Endpoint})";
}

/// <summary>
/// One ring generation as one rank sees it: what <see cref="RingAllReduce"/> needs of a transport. Frames go to the
/// right neighbour and come from the left one, in order; the sending and the receiving side are each driven by one
/// thread at a time and may block. A failure or an abort ends the generation for good: the owner configures a new one.
/// </summary>
interface IRingLink
{
    long Generation { get; }
    RingNeighbour Left { get; }
    RingNeighbour Right { get; }

    /// <summary>How frames travel, for logs and benchmarks: "tcp", "unix".</summary>
    string Transport { get; }

    /// <summary>Payload bytes the right neighbour read from this rank's <see cref="SharedFloatBuffer"/>s, not copied to it.</summary>
    long BytesReferenced { get; }

    /// <summary>Claims the generation for one all-reduce; the token is cancelled by <see cref="Abort"/>. Throws <see cref="AllReduceException"/> once the generation has ended.</summary>
    CancellationToken BeginOperation();

    /// <summary>The all-reduce is over; a failed one ends the generation.</summary>
    void EndOperation(bool succeeded);

    /// <summary>Ends the generation at once from any thread, the owner's order: an all-reduce in flight fails with <see cref="AllReduceFailure.Aborted"/>.</summary>
    void Abort(string why);

    /// <summary>Ends the generation at once because the all-reduce running on it failed: blocked sends and receives return.</summary>
    void Cut(string why);

    /// <summary>A new generation replaces this one: closes what is idle in order, cuts an all-reduce still running.</summary>
    void Retire(string why);

    /// <summary>Sends one frame and its payload to the right neighbour.</summary>
    void Send(in RingFrame frame, ReadOnlySpan<byte> payload, CancellationToken cancellationToken);

    /// <summary>
    /// Returns once the right neighbour has read every payload this rank sent from its own buffer
    /// (<see cref="SharedFloatBuffer"/>): until then the all-reduce must not end, as its caller may change the buffer.
    /// Throws <see cref="AllReduceException"/> when the generation ends first.
    /// </summary>
    void AwaitPayloadsRead();

    /// <summary>The next frame's header from the left neighbour; its payload must be read next.</summary>
    RingFrame ReceiveFrame(CancellationToken cancellationToken);

    /// <summary>The payload of the frame last received, straight into <paramref name="into"/>.</summary>
    void ReceivePayload(Span<byte> into, CancellationToken cancellationToken);

    /// <summary>Adds the float32 payload of the frame last received to <paramref name="target"/>; <paramref name="scratch"/> may hold it on the way.</summary>
    void ReceiveAdding(Span<float> target, Span<float> scratch, CancellationToken cancellationToken);
}
